"""`mlpipe`: the command line. Thin: parse, load config once, call one module, map errors
to exit codes (0 ok, 1 pipeline or gate failed, 2 bad config or input, 3 infrastructure)."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from steps.errors import StepError
from steps.names import Step
from workflows.compiler import compile_manifests, write_manifests
from workflows.config import DEFAULT_CONFIG, ConfigError, LoadedConfig, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved config.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic sample data.")
store_app = typer.Typer(no_args_is_help=True, help="The embedded S3 server (SeaweedFS).")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(store_app, name="store")

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Pipeline config YAML.", show_default=True)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set train.rounds=50 (repeatable)."),
]


def fail(message: str, code: int) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load(config: Path, overrides: list[str] | None) -> LoadedConfig:
    try:
        return load_config(config, overrides or [])
    except ConfigError as error:
        raise fail(str(error), 2) from error


@app.command("compile")
def compile_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the YAML manifests.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Write the Argo manifests: WorkflowTemplate, Workflow and CronWorkflow."""
    loaded = load(config, set_)
    try:
        paths = write_manifests(compile_manifests(loaded), out)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    for path in paths:
        console.print(str(path))


@app.command("run")
def run_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset: local path or s3:// URI.")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Run the compiled pipeline on this machine with an embedded S3 server."""
    from workflows.local_run import run_pipeline

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.uri={data}")
    loaded = load(config, overrides)
    try:
        code = run_pipeline(loaded, console)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    raise typer.Exit(code)


@config_app.command("show")
def config_show(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Print the config after defaults, environment and --set overrides."""
    loaded = load(config, set_)
    console.print(f"# {loaded.path}", highlight=False)
    dumped = loaded.pipeline.model_dump(mode="json")
    console.print(yaml.safe_dump(dumped, sort_keys=False), highlight=False, end="")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    rows: Annotated[int, typer.Option("--rows", min=1)] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Write the synthetic churn dataset (deterministic for a seed)."""
    # The generator is a step (`python -m steps synth`): the CLI never runs step code in-process.
    command = [sys.executable, "-m", "steps", Step.SYNTH.value]
    command += ["--rows", str(rows), "--out", str(out), "--seed", str(seed)]
    raise typer.Exit(subprocess.run(command, check=False).returncode)


@store_app.command("up")
def store_up(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Start the embedded S3 server in the background (data kept under storage.data_dir)."""
    from workflows.s3server import start_detached

    storage = load(config, set_).pipeline.storage
    state = start_detached(storage.data_dir)
    console.print(f"S3 endpoint {state.endpoint} (pid {state.pid}), bucket {storage.bucket}")
    console.print(
        f"  AWS_ACCESS_KEY_ID={state.access_key} AWS_SECRET_ACCESS_KEY={state.secret_key} "
        f"aws --endpoint-url {state.endpoint} s3 ls s3://{storage.bucket}/",
        highlight=False,
    )


@store_app.command("down")
def store_down(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Stop the background S3 server."""
    from workflows.s3server import stop_detached

    storage = load(config, set_).pipeline.storage
    stopped = stop_detached(storage.data_dir)
    console.print("stopped" if stopped else f"no server running for {storage.data_dir}")


@store_app.command("ls")
def store_ls(
    prefix: Annotated[str, typer.Argument(help="Key prefix, e.g. registry/churn/.")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """List artifact keys (starts the server for the listing when it is not up)."""
    from steps.store import ArtifactStore
    from workflows.local_run import s3_for

    pipeline = load(config, set_).pipeline
    try:
        with s3_for(pipeline, dict(os.environ)) as access:
            store = ArtifactStore(
                access.endpoint,
                pipeline.storage.bucket,
                access.access_key,
                access.secret_key,
                pipeline.storage.region,
            )
            store.ensure_bucket()
            keys = store.list(prefix)
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    for key in keys:
        console.print(key, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
