"""`mlpipe config show`: the config as the pipeline sees it."""

import typer
import yaml

from workflows.cli.options import ConfigOption, SetOption, console, load
from workflows.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="Inspect the resolved config.")


@app.command("show")
def config_show(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Print the config after defaults, environment and --set overrides."""
    loaded = load(config, set_)
    console.print(f"# {loaded.path}", highlight=False)
    dumped = loaded.pipeline.model_dump(mode="json")
    console.print(yaml.safe_dump(dumped, sort_keys=False), highlight=False, end="")
