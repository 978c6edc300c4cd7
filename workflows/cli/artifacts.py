"""A local run's artifacts: `mlpipe reports RUN` and `mlpipe artifacts get RUN STEP NAME`."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from workflows.cli.options import ConfigOption, RunArgument, SetOption, load
from workflows.config import DEFAULT_CONFIG

if TYPE_CHECKING:
    from steps.core.store import ArtifactStore
    from workflows.run_record import RunRecord

app = typer.Typer(no_args_is_help=True, help="A local run's artifacts.")
reports_app = typer.Typer()
"""`reports` is a command of its own, not of the group."""


@contextmanager
def run_store(
    config: Path, set_: list[str] | None, run: str
) -> Iterator[tuple["RunRecord", "ArtifactStore"]]:
    """The run's record and the store holding its artifacts (started for the while)."""
    from workflows.local_run import local_storage
    from workflows.run_record import load_record

    pipeline = load(config, set_).pipeline
    record = load_record(pipeline.engine.workdir, run)
    with local_storage(pipeline, dict(os.environ)) as storage:
        yield record, storage.store


@reports_app.command("reports")
def reports(
    run: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files.")] = Path(
        ".mlpipe/reports"
    ),
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Download a local run's HTML reports and its summary; print their paths."""
    from workflows.run_record import fetch_reports

    with run_store(config, set_, run) as (record, store):
        paths = fetch_reports(store, record, out.absolute() / run)
    for path in paths:
        print(path)


@app.command("get")
def artifacts_get(
    run: RunArgument,
    step: Annotated[str, typer.Argument(help="Step (template name or node path), e.g. audit.")],
    name: Annotated[str, typer.Argument(help="Output artifact name, e.g. audit-report.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="File (or folder) to write.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Download one output artifact of one step of a local run."""
    from workflows.run_record import fetch_artifact

    with run_store(config, set_, run) as (record, store):
        path = fetch_artifact(store, record, step, name, out.absolute())
    print(path)
