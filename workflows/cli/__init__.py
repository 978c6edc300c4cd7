"""`mlpipe`: the command line. Thin: parse, load config once, call one module, map errors
to exit codes (0 ok, 1 pipeline or gate failed, 2 bad config or input, 3 infrastructure)."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from rich.console import Console
from rich.text import Text

from steps.core.errors import StepError
from steps.core.names import Step
from workflows.cli.argo import argo_app
from workflows.compiler import compile_manifests, write_manifests
from workflows.config import DEFAULT_CONFIG, ConfigError, LoadedConfig, load_config

if TYPE_CHECKING:
    from workflows.argo_client import ArgoClient

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved config.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic sample data.")
store_app = typer.Typer(no_args_is_help=True, help="The embedded S3 server (SeaweedFS).")
schedule_app = typer.Typer(
    no_args_is_help=True, help="Scheduled retraining: apply the CronWorkflow, run or simulate it."
)
provenance_app = typer.Typer(
    no_args_is_help=True, help="The provenance chain of a run: show it, verify it."
)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(store_app, name="store")
app.add_typer(schedule_app, name="schedule")
deploy_app = typer.Typer(
    no_args_is_help=True,
    help="Model servers: the local stable server deploy leaves running; Kubernetes manifests.",
)
app.add_typer(provenance_app, name="provenance")
app.add_typer(deploy_app, name="deploy")
artifacts_app = typer.Typer(no_args_is_help=True, help="A local run's artifacts.")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(argo_app, name="argo")

# Nothing printed here is markup: messages carry user and data text (`[yes, no]`, `abc[/x]`)
# that Rich would otherwise eat. Styles come from Text objects.
console = Console(markup=False, highlight=False)
errors = Console(stderr=True, markup=False, highlight=False)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Pipeline config YAML.", show_default=True)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set train.rounds=50 (repeatable)."),
]


def fail(message: str, code: int) -> typer.Exit:
    errors.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    return typer.Exit(code)


def load(config: Path, overrides: list[str] | None, inferred: Path | None = None) -> LoadedConfig:
    # Without config/local.yaml where the command runs (a project of the user's), the
    # defaults stand in for it; a --config given by name must exist.
    allow_missing = config == DEFAULT_CONFIG
    try:
        return load_config(config, overrides or [], inferred=inferred, allow_missing=allow_missing)
    except ConfigError as error:
        raise fail(str(error), 2) from error


@app.command("compile")
def compile_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the YAML manifests.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Write the Argo manifests: WorkflowTemplate, Workflow and CronWorkflow."""
    loaded = load(config, set_)
    try:
        paths = write_manifests(compile_manifests(loaded), out)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    for path in paths:
        console.print(str(path))


LabelOption = Annotated[
    str | None,
    typer.Option("--label", help="The binary label column: infer everything else from --data."),
]
PositiveClassOption = Annotated[
    str | None,
    typer.Option(
        "--positive-class", help="The label value that is positive (when the labels do not say)."
    ),
]


@app.command("init")
def init_command(
    data: Annotated[str, typer.Option("--data", help="A local CSV or Parquet file.")],
    label: Annotated[str, typer.Option("--label", help="The binary label column.")],
    positive_class: PositiveClassOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the files (default config/<model>).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Infer what the data means and write it as files you own: a config, a GX expectation
    suite and a slices file, each choice with its reason. Then run them with
    `mlpipe run --config DIR/config.yaml`."""
    from workflows.inference import run_init

    raise typer.Exit(run_init(data, label, positive_class, out, force=force))


@app.command("lint")
def lint_command(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or folders.")],
) -> None:
    """Check Argo manifests offline: strict schema, Argo's rules, templateRefs across files."""
    from workflows.lint import UnreadableInput, lint_paths, report_lines

    try:
        report = lint_paths(paths)
    except UnreadableInput as error:
        raise fail(str(error), 2) from error
    for line in report_lines(report):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    errors.print(f"{len(report.problems)} problem(s) in {len(report.documents)} manifest(s)")
    raise typer.Exit(report.exit_code)


@app.command("run")
def run_command(
    config: ConfigOption = DEFAULT_CONFIG,
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset: local path or s3:// URI.")
    ] = None,
    label: LabelOption = None,
    positive_class: PositiveClassOption = None,
    set_: SetOption = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Re-run an interrupted run by name, reusing finished steps."),
    ] = None,
) -> None:
    """Run the compiled pipeline on this machine with an embedded S3 server.

    With --label, what the data means (features, row key, positive class, suite, slices, model
    name) is inferred from --data first, as `mlpipe init` would write it."""
    from workflows.local_run import run_pipeline

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.uri={data}")
    inferred = None
    if label is not None:
        inferred = _infer_for_run(config, overrides, data, label, positive_class)
    elif positive_class is not None:
        raise fail("--positive-class goes with --label (or set data.positive_class)", 2)
    loaded = load(config, overrides, inferred)
    try:
        code = run_pipeline(loaded, console, resume)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    raise typer.Exit(code)


def _infer_for_run(
    config: Path, overrides: list[str], data: str | None, label: str, positive: str | None
) -> Path:
    """Infer the data's config, suite and slices into `.mlpipe/inferred/`; the config's path."""
    from workflows.inference import inferred_config, inferred_folder, run_init

    if data is None:
        raise fail("--label infers from a data file: give it with --data FILE", 2)
    folder = inferred_folder(load(config, overrides).pipeline, data, label, positive)
    code = run_init(
        data, label, positive, folder, force=True, command="mlpipe run --label", quiet=True
    )
    if code:
        raise typer.Exit(code)
    console.print(f"inferred: {folder} (mlpipe init writes the same files for you to edit)")
    return inferred_config(folder)


@config_app.command("show")
def config_show(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Print the config after defaults, environment and --set overrides."""
    loaded = load(config, set_)
    console.print(f"# {loaded.path}", highlight=False)
    dumped = loaded.pipeline.model_dump(mode="json")
    console.print(yaml.safe_dump(dumped, sort_keys=False), highlight=False, end="")


CovariateDriftOption = Annotated[
    list[str] | None,
    typer.Option(
        "--covariate-drift",
        metavar="FEATURE=STRENGTH",
        help="Move a numeric feature by STRENGTH standard deviations, or tilt a categorical "
        "one's mix (repeatable); labels keep their relation to the features.",
    ),
]
NewCategoryOption = Annotated[
    list[str] | None,
    typer.Option(
        "--new-category",
        metavar="FEATURE=VALUE:SHARE",
        help="Give SHARE of the rows a category training never saw (repeatable).",
    ),
]
ConceptDriftOption = Annotated[
    float,
    typer.Option(
        "--concept-drift",
        min=0.0,
        max=1.0,
        help="0-1: how far the label's relation to the features turns (0.5 cancels it).",
    ),
]


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    rows: Annotated[int, typer.Option("--rows", min=1)] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    covariate_drift: CovariateDriftOption = None,
    new_category: NewCategoryOption = None,
    concept_drift: ConceptDriftOption = 0.0,
) -> None:
    """Write the synthetic churn dataset (deterministic for a seed), drifted if asked."""
    from workflows.simulate import drift_arguments

    # The generator is a step (`python -m steps synth`): the CLI never runs step code in-process.
    command = [sys.executable, "-m", "steps", Step.SYNTH.value]
    command += ["--rows", str(rows), "--out", str(out), "--seed", str(seed)]
    command += drift_arguments(covariate_drift or [], new_category or [], concept_drift)
    raise typer.Exit(subprocess.run(command, check=False).returncode)


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


@store_app.command("up")
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


@store_app.command("down")
def store_down(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Stop the background S3 server."""
    from workflows.s3server import stop_detached

    storage = load(config, set_).pipeline.storage
    stopped = stop_detached(storage.data_dir)
    console.print("stopped" if stopped else f"no server running for {storage.data_dir}")


@store_app.command("ls")
def store_ls(
    prefix: Annotated[str, typer.Argument(help="Key prefix, e.g. registry/churn/.")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """List artifact keys (starts the server for the listing when it is not up)."""
    from workflows.local_run import local_storage

    pipeline = load(config, set_).pipeline
    try:
        with local_storage(pipeline, dict(os.environ)) as storage:
            keys = storage.store.list(prefix)
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    # One key per line, never wrapped or styled: the output is for pipes as much as eyes.
    for key in keys:
        print(key)


RunArgument = Annotated[str, typer.Argument(help="Workflow name, e.g. churn-training-x7k2p.")]


@app.command("reports")
def reports(
    run: RunArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files.")] = Path(
        ".mlpipe/reports"
    ),
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Download a local run's HTML reports and its summary; print their paths."""
    from workflows.local_run import local_storage
    from workflows.run_record import fetch_reports, load_record

    pipeline = load(config, set_).pipeline
    try:
        record = load_record(pipeline.engine.workdir, run)
        with local_storage(pipeline, dict(os.environ)) as storage:
            paths = fetch_reports(storage.store, record, out.absolute() / run)
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    for path in paths:
        print(path)


@artifacts_app.command("get")
def artifacts_get(
    run: RunArgument,
    step: Annotated[str, typer.Argument(help="Step (template name or node path), e.g. audit.")],
    name: Annotated[str, typer.Argument(help="Output artifact name, e.g. audit-report.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="File (or folder) to write.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Download one output artifact of one step of a local run."""
    from workflows.local_run import local_storage
    from workflows.run_record import fetch_artifact, load_record

    pipeline = load(config, set_).pipeline
    try:
        record = load_record(pipeline.engine.workdir, run)
        with local_storage(pipeline, dict(os.environ)) as storage:
            path = fetch_artifact(storage.store, record, step, name, out.absolute())
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    print(path)


PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Ed25519 PEM; default: the configured signing key when signing is on.",
    ),
]


def _chain(action: str, run: str, config: Path, set_: list[str] | None, key: Path | None) -> None:
    """`python -m steps chain ...` against the run's bucket: the CLI never runs step code."""
    from workflows.local_run import s3_for, step_environment

    loaded = load(config, set_)
    pipeline = loaded.pipeline
    provenance = pipeline.provenance
    if key is None and provenance.signing and provenance.signing_key is not None:
        key = provenance.signing_key
    command = [sys.executable, "-m", "steps", Step.CHAIN.value, action, "--run", run]
    if key is not None:
        command += ["--public-key", str(key)]
    environ = dict(os.environ)
    try:
        with s3_for(pipeline, environ) as access:
            env = {**environ, **step_environment(access, pipeline)}
            code = subprocess.run(command, env=env, check=False).returncode
    except (ConfigError, StepError) as error:
        raise fail(str(error), getattr(error, "exit_code", 2)) from error
    raise typer.Exit(code)


@provenance_app.command("show")
def provenance_show(
    run: RunArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    public_key: PublicKeyOption = None,
) -> None:
    """Print the chain of statements behind a run, from the data to the deployed model."""
    _chain("show", run, config, set_, public_key)


@provenance_app.command("verify")
def provenance_verify(
    run: RunArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    public_key: PublicKeyOption = None,
) -> None:
    """Re-download every artifact in the run's chain and check digests (and signatures);
    exits 1 on the first mismatch, naming it."""
    _chain("verify", run, config, set_, public_key)


# --- an Argo server: submit, follow and inspect runs; install the namespace -----------------

WorkflowArgument = Annotated[str, typer.Argument(help="Workflow name on the Argo server.")]
IntervalOption = Annotated[
    float, typer.Option("--interval", min=0.05, help="Seconds between status polls.")
]


@contextmanager
def argo_client(loaded: LoadedConfig) -> Iterator["ArgoClient"]:
    """The config's Argo server; every ArgoError or ConfigError inside becomes one line."""
    from workflows.argo_client import ArgoClient, ArgoError, argo_settings

    try:
        with ArgoClient(argo_settings(loaded, os.environ)) as client:
            yield client
    except ArgoError as error:
        raise fail(str(error), error.exit_code) from error
    except ConfigError as error:
        raise fail(str(error), 2) from error


def _follow(client: "ArgoClient", name: str, interval: float) -> None:
    from workflows.argo_view import watch

    run = watch(client, name, console, interval)
    if run.message and not run.succeeded:
        errors.print(f"{run.name} {run.phase}: {run.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if run.succeeded else 1)


@app.command("submit")
def submit_command(
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Workflow parameter: --param data-uri=s3://b/k"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Watch the run until it ends.")] = False,
    interval: IntervalOption = 5.0,
) -> None:
    """Run the pipeline on the Argo server: a Workflow from the installed WorkflowTemplate."""
    from workflows.submission import submission_manifest

    loaded = load(config, set_)
    with argo_client(loaded) as client:
        run = client.submit(submission_manifest(loaded, param or []))
        console.print(run.name, highlight=False)
        console.print(client.link(run.name), highlight=False, soft_wrap=True)
        if wait:
            _follow(client, run.name, interval)


@app.command("status")
def status_command(
    name: WorkflowArgument, config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None
) -> None:
    """A run's steps: status, duration, progress and outputs."""
    from workflows.argo_view import status_table

    with argo_client(load(config, set_)) as client:
        console.print(status_table(client.get(name), client.link(name)))


@app.command("watch")
def watch_command(
    name: WorkflowArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    interval: IntervalOption = 5.0,
) -> None:
    """Follow a run until it ends; exit 0 if it succeeded, 1 otherwise."""
    with argo_client(load(config, set_)) as client:
        _follow(client, name, interval)


@app.command("logs")
def logs_command(
    name: WorkflowArgument,
    step: Annotated[
        str | None, typer.Option("--step", help="Task or template name, e.g. evaluate, worker.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """The main container logs of a run, or of one step, each line prefixed by its step."""
    from workflows.argo_client import ArgoError
    from workflows.argo_view import pods, print_logs, step_pods

    with argo_client(load(config, set_)) as client:
        run = client.get(name)
        selected = step_pods(run, step) if step else []
        if step and not selected:
            known = sorted({node.display_name for node in pods(run)})
            raise ArgoError(f"no step {step!r} in {name} (steps: {', '.join(known)})", 2)
        print_logs(client.logs(name, [str(node.pod_name) for node in selected]), run, console)


@app.command("list")
def list_command(
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Every mlpipe model, not only this config's.")
    ] = False,
) -> None:
    """Recent runs with their model, dataset digest and trigger."""
    from workflows.argo_view import runs_table

    loaded = load(config, set_)
    selector = "app.kubernetes.io/name=mlpipe"
    if not all_models:
        selector += f",mlpipe/model={loaded.pipeline.model_name}"
    with argo_client(loaded) as client:
        console.print(runs_table(client.list(selector, limit)))


@app.command("install")
def install_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the namespace's manifests.")],
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Write what the pipeline needs in its namespace, for `kubectl apply -f OUT`."""
    from workflows.install import install_manifests, write_install

    loaded = load(config, set_)
    try:
        paths = write_install(install_manifests(loaded), out)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    for path in paths:
        console.print(str(path), highlight=False)


@deploy_app.command("status")
def deploy_status(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """What the stable track serves against what the registry's stable.json names, after
    repairing a promotion a deploy left half done; exit 1 when they disagree."""
    from steps.deploy.backend import backend_for
    from steps.deploy.promotion import status
    from workflows.local_run import local_storage

    loaded = load(config, set_)
    pipeline = loaded.pipeline
    try:
        with local_storage(pipeline, dict(os.environ)) as storage:
            backend = backend_for(loaded.deploy_spec(), storage.store, pipeline.model_name)
            state = status(storage.store, backend, pipeline.model_name)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
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
        raise fail(
            f"{pipeline.model_name}: served {state.served or 'nothing'} but the registry names "
            f"{state.registered or 'none'}",
            1,
        )
    if state.served is None:
        raise fail(f"{pipeline.model_name}: no model deployed yet", 1)
    _print_local_server(loaded)


def _print_local_server(loaded: LoadedConfig) -> None:
    """The local stable server deploy left running, and every model it serves."""
    import httpx

    from steps.deploy.local import read_server

    if loaded.deploy_spec().kubernetes is not None:
        return
    server = read_server(Path(loaded.pipeline.deploy.state_dir).expanduser())
    if server is None:
        return
    served = httpx.post(f"{server.base_url}/v2/repository/index", json={}, timeout=5).json()
    console.print(f"{server.base_url} (pid {server.pid}, log {server.log})", soft_wrap=True)
    for model in served:
        console.print(f"  {model['name']} {model['version']}", soft_wrap=True)


@deploy_app.command("stop")
def deploy_stop(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Stop the local stable model server (it drains in-flight requests first)."""
    from steps.deploy.local import stop_server

    state_dir = Path(load(config, set_).pipeline.deploy.state_dir).expanduser()
    stopped = stop_server(state_dir)
    console.print("stopped" if stopped else f"no stable model server running for {state_dir}")


@deploy_app.command("render")
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
    try:
        paths = write_install(rollout_manifests(loaded, digest, stable_digest, percent), out)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    for path in paths:
        console.print(str(path), highlight=False, soft_wrap=True)


@schedule_app.command("apply")
def schedule_apply(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Create or update the retraining CronWorkflow on the Argo server (argo.server)."""
    from workflows.argo_client import ArgoClient, ArgoError, argo_settings

    loaded = load(config, set_)
    try:
        cron = compile_manifests(loaded).cron
        with ArgoClient(argo_settings(loaded, os.environ)) as client:
            applied = client.apply_cron(cron)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    except ArgoError as error:
        raise fail(str(error), error.exit_code) from error
    schedules = ", ".join(loaded.pipeline.schedule.schedules)
    console.print(
        f"{applied} CronWorkflow {cron['metadata']['name']} in namespace "
        f"{loaded.pipeline.argo.namespace}: {schedules} ({loaded.pipeline.schedule.timezone})",
        highlight=False,
    )


@schedule_app.command("run-once")
def schedule_run_once(
    config: ConfigOption = DEFAULT_CONFIG,
    data: Annotated[
        str | None, typer.Option("--data", help="Data a retraining trains on (data.uri).")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Data the drift check judges (default: the data)."),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Run the CronWorkflow's workflow now, on this machine: the drift check, then training
    only if it calls for it."""
    from workflows.schedule import run_once

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.uri={data}")
    if window is not None:
        overrides.append(f"drift.window_uri={window}")
    loaded = load(config, overrides)
    try:
        code = run_once(loaded, console)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    raise typer.Exit(code)


@schedule_app.command("simulate")
def schedule_simulate(
    days: Annotated[int, typer.Option("--days", min=1, help="Days after day 0.")] = 60,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            help="DAY:KIND[=ARGUMENT], KIND covariate (FEATURE=STRENGTH), category "
            "(FEATURE=VALUE:SHARE), concept (STRENGTH), corrupt or outage (repeatable). "
            "Default: covariate day 10, category 25, concept 40, corrupt 50, outage 55 "
            "(those within --days).",
        ),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=100, help="Rows per day.")] = 5000,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Boosting rounds.")] = 20,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Feed a synthetic stream with events through the scheduled run, day by day; print each
    day, then the days against an oracle retrained daily and the loop's summary. Exit 1 when
    a target is missed."""
    from workflows.simulate import DEFAULT_EVENTS, Event, Scenario, simulate

    loaded = load(config, set_)
    try:
        if event:
            events = tuple(Event.parse(text) for text in event)
        else:
            events = tuple(e for e in DEFAULT_EVENTS if e.day <= days)
        scenario = Scenario(days=days, events=events, rows=rows, rounds=rounds, seed=seed)
        _, summary = simulate(loaded, scenario, console)
    except ConfigError as error:
        raise fail(str(error), 2) from error
    except StepError as error:
        raise fail(str(error), error.exit_code) from error
    raise typer.Exit(0 if all(summary.targets.values()) else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
