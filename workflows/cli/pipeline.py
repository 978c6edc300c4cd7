"""`mlpipe compile`, `mlpipe init` and `mlpipe run`: the pipeline's manifests, what a dataset
means, and running the pipeline here."""

from pathlib import Path
from typing import Annotated

import typer

from steps.core.errors import BadInput
from workflows.cli.options import ConfigOption, DataOption, SetOption, console, load
from workflows.compiler import compile_manifests, write_manifests
from workflows.config import DEFAULT_CONFIG

app = typer.Typer()


@app.command("compile")
def compile_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the YAML manifests.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Write the Argo manifests: WorkflowTemplate, Workflow and CronWorkflow."""
    for path in write_manifests(compile_manifests(load(config, set_)), out):
        console.print(str(path))


LabelOption = Annotated[
    str | None,
    typer.Option("--label", help="The binary label column: infer everything else from --data."),
]
PositiveClassOption = Annotated[
    str | None,
    typer.Option(
        "--positive-class", help="The label value that is positive (when the labels do not say)."
    ),
]


@app.command("init")
def init_command(
    data: Annotated[str, typer.Option("--data", help="A local CSV or Parquet file.")],
    label: Annotated[str, typer.Option("--label", help="The binary label column.")],
    positive_class: PositiveClassOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the files (default config/<model>).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Infer what the data means and write it as files you own: a config, a GX expectation
    suite and a slices file, each choice with its reason. Then run them with
    `mlpipe run --config DIR/config.yaml`."""
    from workflows.inference import run_init

    raise typer.Exit(run_init(data, label, positive_class, out, force=force))


@app.command("run")
def run_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data: DataOption = None,
    label: LabelOption = None,
    positive_class: PositiveClassOption = None,
    set_: SetOption = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Re-run an interrupted run by name, reusing finished steps."),
    ] = None,
) -> None:
    """Run the compiled pipeline on this machine with an embedded S3 server.

    With --label, what the data means (features, row key, positive class, suite, slices, model
    name) is inferred from --data first, as `mlpipe init` would write it."""
    from workflows.local_run import run_pipeline

    inferred = None
    if label is not None:
        inferred = _infer_for_run(config, set_, data, label, positive_class)
    elif positive_class is not None:
        raise BadInput("--positive-class goes with --label (or set data.positive_class)")
    raise typer.Exit(run_pipeline(load(config, set_, data, inferred), console, resume))


def _infer_for_run(
    config: Path, overrides: list[str] | None, data: str | None, label: str, positive: str | None
) -> Path:
    """Infer the data's config, suite and slices into `.mlpipe/inferred/`; the config's path."""
    from workflows.inference import inferred_config, inferred_folder, run_init

    if data is None:
        raise BadInput("--label infers from a data file: give it with --data FILE")
    folder = inferred_folder(load(config, overrides, data).pipeline, data, label, positive)
    code = run_init(
        data, label, positive, folder, force=True, command="mlpipe run --label", quiet=True
    )
    if code:
        raise typer.Exit(code)
    console.print(f"inferred: {folder} (mlpipe init writes the same files for you to edit)")
    return inferred_config(folder)
