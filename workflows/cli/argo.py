"""`mlpipe argo`: any Argo Workflow YAML, run on this machine (workflows/argo_local.py)."""

from pathlib import Path
from typing import Annotated

import typer

argo_app = typer.Typer(
    no_args_is_help=True, help="Run any Argo Workflow YAML locally, as `argo submit --watch`."
)


@argo_app.command("submit")
def argo_submit(
    file: Annotated[Path, typer.Argument(help="Workflow YAML (may also hold its templates).")],
    entrypoint: Annotated[
        str | None, typer.Option("--entrypoint", help="Template to start from.")
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option("--parameter", "-p", help="Workflow parameter NAME=VALUE (repeatable)."),
    ] = None,
    parameter_file: Annotated[
        Path | None,
        typer.Option("--parameter-file", help="YAML or JSON mapping of parameter values."),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option(
            "--templates",
            help="Folder of (Cluster)WorkflowTemplates, ConfigMaps and Secrets it may use.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only check: Argo's rules, then local limits.")
    ] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config YAML.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key (repeatable).")
    ] = None,
) -> None:
    """Run FILE's Workflow locally; exit 0 Succeeded, 1 Failed/Error, 2 refused, 3 storage."""
    from steps.core.errors import StepError
    from workflows.argo_local import check, load_submission, submit
    from workflows.cli import console, fail, load
    from workflows.config import DEFAULT_CONFIG
    from workflows.engine import ManifestError

    loaded = load(config or DEFAULT_CONFIG, set_)
    try:
        submission = load_submission(file, templates, entrypoint, parameter or [], parameter_file)
        if dry_run:
            check(loaded, submission)
            console.print(f"{submission.source}: accepted (nothing was run)")
            raise typer.Exit(0)
        result = submit(loaded, submission, console)
    except ManifestError as error:
        raise fail(f"refused: {error}", 2) from error
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    raise typer.Exit(0 if result.succeeded else 1)
