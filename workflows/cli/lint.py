"""`mlpipe lint`: Argo manifests checked offline, as a controller would check them."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from workflows.cli.options import console

app = typer.Typer()


@app.command("lint")
def lint_command(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or folders.")],
) -> None:
    """Check Argo manifests offline: strict schema, Argo's rules, templateRefs across files."""
    from workflows.lint import lint_paths, report_lines

    report = lint_paths(paths)
    for line in report_lines(report):
        console.print(line, soft_wrap=True)
    print(
        f"{len(report.problems)} problem(s) in {len(report.documents)} manifest(s)", file=sys.stderr
    )
    raise typer.Exit(report.exit_code)
