"""What every command shares: the consoles, the `--config` and `--set` options, and loading
the config once at the edge."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from workflows.config import DEFAULT_CONFIG, LoadedConfig, load_config

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


def load(
    config: Path,
    overrides: list[str] | None,
    data: str | None = None,
    inferred: Path | None = None,
) -> LoadedConfig:
    """The config after the environment and `--set` (and `--data`, which sets data.uri), with
    what `mlpipe run --label` inferred as a layer below them."""
    assignments = list(overrides or [])
    if data is not None:
        assignments.append(f"data.uri={data}")
    # Without config/local.yaml where the command runs (a project of the user's), the
    # defaults stand in for it; a --config given by name must exist.
    allow_missing = config == DEFAULT_CONFIG
    return load_config(config, assignments, inferred=inferred, allow_missing=allow_missing)
