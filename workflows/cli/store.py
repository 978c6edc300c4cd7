"""`mlpipe store up|down|ls`: the embedded S3 server in the background, to browse artifacts."""

import os
from typing import Annotated

import typer

from workflows.cli.options import ConfigOption, SetOption, console, load
from workflows.config import DEFAULT_CONFIG

app = typer.Typer(no_args_is_help=True, help="The embedded S3 server (SeaweedFS).")


@app.command("up")
def store_up(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Start the embedded S3 server in the background (data kept under storage.data_dir)."""
    from workflows.s3server import start_detached

    storage = load(config, set_).pipeline.storage
    state = start_detached(storage.data_dir)
    console.print(f"S3 endpoint {state.endpoint} (pid {state.pid}), bucket {storage.bucket}")
    console.print(
        f"  AWS_ACCESS_KEY_ID={state.access_key} AWS_SECRET_ACCESS_KEY={state.secret_key} "
        f"aws --endpoint-url {state.endpoint} s3 ls s3://{storage.bucket}/",
        highlight=False,
    )


@app.command("down")
def store_down(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Stop the background S3 server."""
    from workflows.s3server import stop_detached

    storage = load(config, set_).pipeline.storage
    stopped = stop_detached(storage.data_dir)
    console.print("stopped" if stopped else f"no server running for {storage.data_dir}")


@app.command("ls")
def store_ls(
    prefix: Annotated[str, typer.Argument(help="Key prefix, e.g. registry/churn/.")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """List artifact keys (starts the server for the listing when it is not up)."""
    from workflows.local_run import local_storage

    pipeline = load(config, set_).pipeline
    with local_storage(pipeline, dict(os.environ)) as storage:
        keys = storage.store.list(prefix)
    # One key per line, never wrapped or styled: the output is for pipes as much as eyes.
    for key in keys:
        print(key)
