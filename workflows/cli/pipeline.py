"""`mlpipe compile` and `mlpipe run`: the pipeline's manifests, and running them here."""

from pathlib import Path
from typing import Annotated

import typer

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


@app.command("run")
def run_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data: DataOption = None,
    set_: SetOption = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Re-run an interrupted run by name, reusing finished steps."),
    ] = None,
) -> None:
    """Run the compiled pipeline on this machine with an embedded S3 server."""
    from workflows.local_run import run_pipeline

    raise typer.Exit(run_pipeline(load(config, set_, data), console, resume))
