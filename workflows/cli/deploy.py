"""`mlpipe deploy status|stop|render`: the local stable server deploy leaves running, and the
Kubernetes manifests the deploy task applies."""

from pathlib import Path
from typing import Annotated

import typer

from steps.core.errors import MlpipeError
from workflows.cli.options import ConfigOption, SetOption, console, load
from workflows.config import DEFAULT_CONFIG

app = typer.Typer(
    no_args_is_help=True,
    help="Model servers: the local stable server deploy leaves running; Kubernetes manifests.",
)


@app.command("status")
def deploy_status(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """The local stable model server that deploy started (it keeps serving after the run);
    exit 1 when none is running or it serves no model."""
    import httpx

    from steps.deploy.local import read_server

    state_dir = Path(load(config, set_).pipeline.deploy.state_dir).expanduser()
    server = read_server(state_dir)
    if server is None:
        raise MlpipeError(f"no stable model server running for {state_dir}")
    # A live pid is not a serving model: ask the server itself what it serves.
    try:
        models = httpx.post(f"{server.base_url}/v2/repository/index", json={}, timeout=5)
        models.raise_for_status()
    except httpx.HTTPError as error:
        raise MlpipeError(
            f"stable model server {server.base_url} does not answer: {error}"
        ) from error
    served = models.json()
    if not served:
        raise MlpipeError(f"stable model server {server.base_url} serves no model")
    console.print(f"{server.base_url} (pid {server.pid}, log {server.log})", highlight=False)
    for model in served:
        console.print(f"  {model['name']} {model['version']}", highlight=False)


@app.command("stop")
def deploy_stop(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Stop the local stable model server (it drains in-flight requests first)."""
    from steps.deploy.local import stop_server

    state_dir = Path(load(config, set_).pipeline.deploy.state_dir).expanduser()
    stopped = stop_server(state_dir)
    console.print("stopped" if stopped else f"no stable model server running for {state_dir}")


@app.command("render")
def deploy_render(
    out: Annotated[Path, typer.Option("--out", help="Folder for the YAML manifests.")],
    digest: Annotated[
        str, typer.Option("--digest", help="sha256 of the ONNX model to roll out (registry).")
    ],
    stable_digest: Annotated[
        str | None,
        typer.Option(
            "--stable-digest",
            help="sha256 of the model serving now: render the canary beside it. "
            "Omitted: a first deploy, the model alone as stable.",
        ),
    ] = None,
    canary_percent: Annotated[
        int | None,
        typer.Option("--canary-percent", help="Canary traffic share (default: first canary step)."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Write the serving manifests the deploy task applies (config section `serving:`)."""
    from workflows.install import rollout_manifests, write_install

    loaded = load(config, set_)
    percent = loaded.pipeline.deploy.canary.steps[0] if canary_percent is None else canary_percent
    manifests = rollout_manifests(loaded, digest, stable_digest, percent)
    for path in write_install(manifests, out):
        console.print(str(path), highlight=False, soft_wrap=True)
