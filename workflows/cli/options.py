"""What every command shares: the consoles, the `--config` and `--set` options, and loading
the config once at the edge."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workflows.config import LoadedConfig, load_config

# Nothing printed is markup: messages carry user and data text (`[yes, no]`, `abc[/x]`) that
# Rich would otherwise eat. Styles come from Text objects.
console = Console(markup=False, highlight=False)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Pipeline config YAML.", show_default=True)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set train.rounds=50 (repeatable)."),
]
RunArgument = Annotated[str, typer.Argument(help="Workflow name, e.g. churn-training-x7k2p.")]
DataOption = Annotated[str | None, typer.Option("--data", help="Dataset: local path or s3:// URI.")]


def load(config: Path, overrides: list[str] | None, data: str | None = None) -> LoadedConfig:
    """The config after the environment and `--set` (and `--data`, which sets data.uri)."""
    assignments = list(overrides or [])
    if data is not None:
        assignments.append(f"data.uri={data}")
    return load_config(config, assignments)
