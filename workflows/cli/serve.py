"""`mlpipe serve`: the model server in the foreground."""

import os
import sys

import typer

app = typer.Typer()


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    # --help goes to the server too: its own help lists every option, so it is never stale.
    add_help_option=False,
)
def serve_command(ctx: typer.Context) -> None:
    """Serve an ONNX model over the Open Inference Protocol v2, in the foreground.

    The server deploy runs; every argument goes to `python -m serving`, whose options
    `mlpipe serve --help` lists: `mlpipe serve --model model.onnx --name churn --port 8080`.
    """
    # exec, not a child: signals (Ctrl-C, SIGTERM's graceful drain) reach the server itself.
    os.execv(sys.executable, [sys.executable, "-m", "serving", *ctx.args])
