"""`mlpipe`: the command line, one module per command group.

Thin: parse, load the config once, call one module. Every failure meant for the user is an
MlpipeError (steps/core/errors.py, ConfigError and ArgoError among them) and reaches `main`,
which prints it as one `error: ...` line and exits with its code: 1 a gate or the pipeline
failed, 2 bad config or input, 3 storage or infrastructure.
"""

import sys

import typer
from rich.console import Console
from rich.text import Text

from steps.core.errors import MlpipeError
from workflows.cli import (
    argo,
    artifacts,
    cluster,
    config,
    data,
    deploy,
    lint,
    pipeline,
    provenance,
    schedule,
    serve,
    store,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(pipeline.app)
app.add_typer(lint.app)
app.add_typer(config.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(serve.app)
app.add_typer(store.app, name="store")
app.add_typer(artifacts.reports_app)
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(schedule.app, name="schedule")
app.add_typer(provenance.app, name="provenance")
app.add_typer(deploy.app, name="deploy")
app.add_typer(cluster.app)
app.add_typer(argo.app, name="argo")


def main() -> None:
    try:
        app()
    except MlpipeError as error:
        # The message is text, never markup: it quotes data and config values.
        errors = Console(stderr=True, markup=False, highlight=False)
        errors.print(Text.assemble(("error:", "bold red"), " ", str(error)), soft_wrap=True)
        sys.exit(error.exit_code)
