"""Runs on an Argo server: `mlpipe submit|status|watch|logs|list`, and `mlpipe install`,
which writes what the pipeline needs in its namespace."""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from workflows.cli.options import ConfigOption, SetOption, console, load
from workflows.config import DEFAULT_CONFIG, LoadedConfig

if TYPE_CHECKING:
    from workflows.argo_client import ArgoClient

app = typer.Typer()

WorkflowArgument = Annotated[str, typer.Argument(help="Workflow name on the Argo server.")]
IntervalOption = Annotated[
    float, typer.Option("--interval", min=0.05, help="Seconds between status polls.")
]


def argo_client(loaded: LoadedConfig) -> "ArgoClient":
    """The config's Argo server (a context manager)."""
    from workflows.argo_client import ArgoClient, argo_settings

    return ArgoClient(argo_settings(loaded, os.environ))


def _follow(client: "ArgoClient", name: str, interval: float) -> None:
    from workflows.argo_view import watch

    run = watch(client, name, console, interval)
    if run.message and not run.succeeded:
        print(f"{run.name} {run.phase}: {run.message}", file=sys.stderr)
    raise typer.Exit(0 if run.succeeded else 1)


@app.command("submit")
def submit_command(
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Workflow parameter: --param data-uri=s3://b/k"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Watch the run until it ends.")] = False,
    interval: IntervalOption = 5.0,
) -> None:
    """Run the pipeline on the Argo server: a Workflow from the installed WorkflowTemplate."""
    from workflows.submission import submission_manifest

    loaded = load(config, set_)
    with argo_client(loaded) as client:
        run = client.submit(submission_manifest(loaded, param or []))
        console.print(run.name, highlight=False)
        console.print(client.link(run.name), highlight=False, soft_wrap=True)
        if wait:
            _follow(client, run.name, interval)


@app.command("status")
def status_command(
    name: WorkflowArgument, config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None
) -> None:
    """A run's steps: status, duration, progress and outputs."""
    from workflows.argo_view import status_table

    with argo_client(load(config, set_)) as client:
        console.print(status_table(client.get(name), client.link(name)))


@app.command("watch")
def watch_command(
    name: WorkflowArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    interval: IntervalOption = 5.0,
) -> None:
    """Follow a run until it ends; exit 0 if it succeeded, 1 otherwise."""
    with argo_client(load(config, set_)) as client:
        _follow(client, name, interval)


@app.command("logs")
def logs_command(
    name: WorkflowArgument,
    step: Annotated[
        str | None, typer.Option("--step", help="Task or template name, e.g. evaluate, worker.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """The main container logs of a run, or of one step, each line prefixed by its step."""
    from workflows.argo_client import ArgoError
    from workflows.argo_view import pods, print_logs, step_pods

    with argo_client(load(config, set_)) as client:
        run = client.get(name)
        selected = step_pods(run, step) if step else []
        if step and not selected:
            known = sorted({node.display_name for node in pods(run)})
            raise ArgoError(f"no step {step!r} in {name} (steps: {', '.join(known)})", 2)
        print_logs(client.logs(name, [str(node.pod_name) for node in selected]), run, console)


@app.command("list")
def list_command(
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Every mlpipe model, not only this config's.")
    ] = False,
) -> None:
    """Recent runs with their model, dataset digest and trigger."""
    from workflows.argo_view import runs_table

    loaded = load(config, set_)
    selector = "app.kubernetes.io/name=mlpipe"
    if not all_models:
        selector += f",mlpipe/model={loaded.pipeline.model_name}"
    with argo_client(loaded) as client:
        console.print(runs_table(client.list(selector, limit)))


@app.command("install")
def install_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the namespace's manifests.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Write what the pipeline needs in its namespace, for `kubectl apply -f OUT`."""
    from workflows.install import install_manifests, write_install

    for path in write_install(install_manifests(load(config, set_)), out):
        console.print(str(path), highlight=False)
