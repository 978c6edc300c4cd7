"""`mlpipe deploy status|stop|render`: what is served against what the registry names, the
local stable server deploy leaves running, and the Kubernetes manifests the deploy task
applies."""

import os
from pathlib import Path
from typing import Annotated

import typer

from steps.core.errors import MlpipeError
from steps.core.specs import DeploySpec
from workflows.cli.options import ConfigOption, SetOption, console, load
from workflows.config import DEFAULT_CONFIG

app = typer.Typer(
    no_args_is_help=True,
    help="Model servers: the local stable server deploy leaves running; Kubernetes manifests.",
)


@app.command("status")
def deploy_status(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """What the stable track serves against what the registry's stable.json names, after
    repairing a promotion a deploy left half done; exit 1 when they disagree."""
    from steps.deploy.backend import backend_for
    from steps.deploy.promotion import status
    from workflows.local_run import local_storage

    loaded = load(config, set_)
    pipeline = loaded.pipeline
    spec = loaded.spec(DeploySpec)
    with local_storage(pipeline, dict(os.environ)) as storage:
        backend = backend_for(spec, storage.store, pipeline.model_name)
        state = status(storage.store, backend, pipeline.model_name)
    if state.repaired is not None:
        console.print(
            f"repaired the promotion {state.repaired.from_digest or 'none'} -> "
            f"{state.repaired.to_digest} left by {state.repaired.workflow or 'a deploy'} "
            f"at {state.repaired.started_at}",
            soft_wrap=True,
        )
    console.print(
        f"{pipeline.model_name}: registry stable.json {state.registered or 'none'}", soft_wrap=True
    )
    console.print(f"{pipeline.model_name}: serving {state.served or 'nothing'}", soft_wrap=True)
    if not state.agrees:
        raise MlpipeError(
            f"{pipeline.model_name}: served {state.served or 'nothing'} but the registry names "
            f"{state.registered or 'none'}"
        )
    if state.served is None:
        raise MlpipeError(f"{pipeline.model_name}: no model deployed yet")
    if spec.kubernetes is None:
        _print_local_server(Path(pipeline.deploy.state_dir).expanduser())


def _print_local_server(state_dir: Path) -> None:
    """The local stable server deploy left running, and every model it serves."""
    import httpx

    from steps.deploy.local import read_server

    server = read_server(state_dir)
    if server is None:
        return
    served = httpx.post(f"{server.base_url}/v2/repository/index", json={}, timeout=5).json()
    console.print(f"{server.base_url} (pid {server.pid}, log {server.log})", soft_wrap=True)
    for model in served:
        console.print(f"  {model['name']} {model['version']}", soft_wrap=True)


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
