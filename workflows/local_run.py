"""`mlpipe run`: compile the pipeline for this config and execute the YAML locally.

The run sees exactly what a cluster would: the compiled manifest files on disk are read back
and handed to the local engine, with an embedded (or configured) S3 server behind them.
`--resume RUN` reads back the manifests that run was compiled to and lets the engine reuse
every node its journal records as finished. The steps of a local run (storage, compile,
engine context, execute, report) are shared with `mlpipe schedule run-once`
(workflows/schedule.py), which runs the CronWorkflow's workflow instead.
"""

import _thread
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from steps.core.errors import BadInput, MlpipeError, StorageError
from steps.core.names import Env
from steps.core.processes import is_alive
from steps.core.store import ArtifactStore, file_sha256
from workflows.compiler import (
    TEMPLATE_FILE,
    WORKFLOW_FILE,
    compile_manifests,
    load_manifest,
    write_manifests,
)
from workflows.config import ConfigError, LoadedConfig, PipelineConfig
from workflows.console import ConsoleView, locations_table, summary_table
from workflows.engine import EngineContext, ManifestError, Observer, RunResult, run_workflow
from workflows.engine.reuse import JOURNAL_FILE
from workflows.run_record import save_record
from workflows.s3server import LOG_FILE, EmbeddedS3, read_state
from workflows.step_template import SIGNING_SECRET_KEY

INPUTS_PREFIX = "inputs"
STORE_POLL_SECONDS = 0.5
WATCHER_SIGNAL = signal.SIGUSR1


@dataclass(frozen=True)
class S3Access:
    """An S3 endpoint with credentials: what the steps' environment and secrets carry, and
    the embedded server's pid (None for an external endpoint)."""

    endpoint: str
    access_key: str
    secret_key: str
    pid: int | None = None


class RunInterrupted(MlpipeError):
    """Ctrl-C: every task was stopped; the message says how to resume."""

    exit_code = 130


EXIT_PRECEDENCE = (BadInput.exit_code, StorageError.exit_code)
"""A failed run exits with its failed steps' class: bad input (2) before infrastructure (3)
before a failed gate or anything else (1): fixing the input comes first."""


@contextmanager
def s3_for(pipeline: PipelineConfig, environ: dict[str, str]) -> Iterator[S3Access]:
    """The embedded server for the run's duration, or the configured external endpoint."""
    storage = pipeline.storage
    if storage.mode == "embedded":
        # A server left up by `mlpipe store up` owns the data folder: share it, never race it.
        running = read_state(storage.data_dir)
        if running is not None:
            yield S3Access(running.endpoint, running.access_key, running.secret_key, running.pid)
            return
        with EmbeddedS3(storage.data_dir) as server:
            yield S3Access(server.endpoint, server.access_key, server.secret_key, server.pid)
        return
    if storage.endpoint is None:
        raise ConfigError("key 'storage.endpoint': required when storage.mode is 'external'")
    missing = [name for name in (Env.ACCESS_KEY, Env.SECRET_KEY) if name not in environ]
    if missing:
        raise ConfigError(
            f"storage.mode is 'external': set {', '.join(missing)} in the environment"
        )
    yield S3Access(storage.endpoint, environ[Env.ACCESS_KEY], environ[Env.SECRET_KEY])


def step_environment(access: S3Access, pipeline: PipelineConfig) -> dict[str, str]:
    return {
        Env.ENGINE: "local",
        Env.S3_ENDPOINT: access.endpoint,
        Env.S3_BUCKET: pipeline.storage.bucket,
        Env.S3_REGION: pipeline.storage.region,
        Env.ACCESS_KEY: access.access_key,
        Env.SECRET_KEY: access.secret_key,
    }


def credentials_secret(access: S3Access) -> dict[str, str]:
    """The Secret the manifests reference (keys as on a cluster), served locally."""
    return {
        "endpoint": access.endpoint,
        "access-key": access.access_key,
        "secret-key": access.secret_key,
    }


def input_key(data_uri: str) -> str | None:
    """The content-addressed key a local dataset is staged under; None for an S3 URI."""
    if data_uri.startswith("s3://"):
        return None
    path = Path(data_uri)
    if path.is_dir():
        raise ConfigError(f"key 'data.uri': {path} is a folder; give one CSV or Parquet file")
    if not path.is_file():
        raise ConfigError(f"key 'data.uri': no such file: {path}")
    return f"{INPUTS_PREFIX}/{file_sha256(path)}/{path.name}"


def staged_uri(bucket: str, data_uri: str, key: str | None) -> str:
    """Where the steps read the dataset: its S3 URI, or the key it is staged under."""
    return data_uri if key is None else f"s3://{bucket}/{key}"


def upload_input(store: ArtifactStore, data_uri: str, key: str | None) -> None:
    if key is not None and not store.exists(key):
        store.upload_file(Path(data_uri), key)


def stage_data(store: ArtifactStore, data_uri: str) -> str:
    """A local dataset is uploaded under a content-addressed key; the steps only read S3."""
    key = input_key(data_uri)
    upload_input(store, data_uri, key)
    return staged_uri(store.bucket, data_uri, key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_directory(pipeline: PipelineConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return pipeline.engine.workdir / stamp


def resumed_directory(pipeline: PipelineConfig, run: str) -> Path:
    """The folder of an earlier run named `run` (it holds its manifests and its journal)."""
    found = sorted(pipeline.engine.workdir.glob(f"*/{run}/{JOURNAL_FILE}"))
    if not found:
        raise ConfigError(
            f"no run named {run!r} to resume under {pipeline.engine.workdir} "
            f"(looked for */{run}/{JOURNAL_FILE})"
        )
    return found[-1].parent.parent


SOURCE_ROOT = Path(__file__).resolve().parents[1]


def local_code_version(root: Path = SOURCE_ROOT) -> str:
    """`mlpipe-<version>-g<commit>`, plus `-dirty-<digest of the changes>` for uncommitted
    code, so a memoized step never reuses what other code computed."""
    try:
        package = version("mlpipe")
    except PackageNotFoundError:
        package = "unknown"
    name = f"mlpipe-{package}"

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=True, timeout=30
        ).stdout

    try:
        name += "-g" + git("rev-parse", "--short=12", "HEAD").decode().strip()
        changes = git("diff", "HEAD", "--binary")
        untracked = git("ls-files", "--others", "--exclude-standard", "-z").split(b"\0")
        for rel in sorted(p for p in untracked if p.endswith(b".py")):
            changes += rel + b"\0" + (root / rel.decode()).read_bytes()
        if changes:
            name += "-dirty-" + hashlib.sha256(changes).hexdigest()[:12]
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed package): the version alone
    return re.sub(r"[^a-zA-Z0-9]+", "-", name)


def signing_secrets(config: LoadedConfig) -> dict[str, dict[str, str]]:
    """The signing Secret the manifests reference, served from the configured key file."""
    provenance = config.pipeline.provenance
    if not provenance.signing:
        return {}
    if provenance.signing_key is None:
        raise ConfigError(
            f"{config.path}: key 'provenance.signing_key': required locally when "
            "provenance.signing is true (an Ed25519 private key PEM)"
        )
    path = provenance.signing_key
    try:
        pem = path.read_text()
    except OSError as error:
        raise ConfigError(
            f"{config.path}: key 'provenance.signing_key': cannot read {path}: {error.strerror}"
        ) from error
    return {provenance.signing_secret: {SIGNING_SECRET_KEY: pem}}


@dataclass(frozen=True)
class LocalStorage:
    """A local run's S3 endpoint and the artifact store on the configured bucket."""

    access: S3Access
    store: ArtifactStore


@contextmanager
def local_storage(pipeline: PipelineConfig, environ: dict[str, str]) -> Iterator[LocalStorage]:
    """`s3_for` with the store on its bucket, created if missing."""
    with s3_for(pipeline, environ) as access:
        store = ArtifactStore(
            access.endpoint,
            pipeline.storage.bucket,
            access.access_key,
            access.secret_key,
            pipeline.storage.region,
        )
        store.ensure_bucket()
        yield LocalStorage(access, store)


def compile_local(config: LoadedConfig, data_uri: str, run_dir: Path) -> list[Path]:
    """Compile for a run on this machine and write the manifests under `run_dir`."""
    # The tracker listens on a fixed port in the manifest (a pod has its own IP); on one
    # machine two runs would share loopback, so each local run compiles with a free one.
    run_config = with_overrides(
        config,
        {
            "data.uri": data_uri,
            "train.tracker_port": free_port(),
            "provenance.code_version": (
                config.pipeline.provenance.code_version or local_code_version()
            ),
        },
    )
    return write_manifests(compile_manifests(run_config), run_dir / "manifests")


def engine_context(
    config: LoadedConfig,
    storage: LocalStorage,
    run_dir: Path,
    environ: dict[str, str],
    secrets: dict[str, dict[str, str]],
) -> EngineContext:
    pipeline = config.pipeline
    # The deploy step leaves the local model server's state on this machine, where later
    # runs (and `mlpipe deploy status`) find it: every task sees that folder, even when it
    # lies under a path the task has its own copy of (its /tmp).
    state_dir = Path(pipeline.deploy.state_dir).expanduser()
    state_dir.mkdir(parents=True, exist_ok=True)
    return EngineContext(
        store=storage.store,
        key_format=pipeline.storage.key_format,
        workdir=run_dir,
        filesystem=pipeline.engine.filesystem,
        shared_paths=(state_dir.resolve(),),
        # The collective needs every worker at once: fewer slots would deadlock it.
        parallelism=max(
            min(pipeline.engine.parallelism, os.cpu_count() or 1), pipeline.train.workers
        ),
        env={**environ, **step_environment(storage.access, pipeline)},
        secrets={
            pipeline.storage.credentials_secret: credentials_secret(storage.access),
            **secrets,
        },
    )


def execute(
    workflow: dict[str, Any],
    template: dict[str, Any],
    context: EngineContext,
    observer: Observer,
    resume: str | None = None,
) -> RunResult:
    """Run a Workflow manifest (which may use the WorkflowTemplate) with the local engine;
    its record (`run.json`) is kept beside its journal for `mlpipe reports`."""
    try:
        result = run_workflow(
            workflow, {template["metadata"]["name"]: template}, context, observer, resume
        )
    except ManifestError as error:
        raise ConfigError(f"the compiled manifest cannot run locally: {error}") from error
    save_record(context.workdir, result)
    return result


def report(result: RunResult, console: Console) -> int:
    """Print what the run did and where its artifacts are; the exit code: 0 if it
    succeeded, else the failed steps' class (EXIT_PRECEDENCE)."""
    console.print(summary_table(result))
    console.print(locations_table(result))
    if not result.succeeded:
        console.print(Text.assemble((result.phase.value, "bold red"), ": ", result.message))
        return exit_code(result)
    console.print(
        Text.assemble(("Succeeded", "bold green"), f" {result.name} in {result.duration:.1f}s")
    )
    return 0


def exit_code(result: RunResult) -> int:
    codes = {node.exit_code for node in result.failed}
    return next((code for code in EXIT_PRECEDENCE if code in codes), 1)


@contextmanager
def prepared_run(
    config: LoadedConfig, environ: dict[str, str], resume: str | None
) -> Iterator[tuple[LocalStorage, Path, list[Path]]]:
    """The run's storage, folder and manifests: those of the run to resume, or compiled in a
    thread while the store starts (neither needs the other; each takes up to a second)."""
    pipeline = config.pipeline
    if resume is not None:
        run_dir = resumed_directory(pipeline, resume)
        manifests = [run_dir / "manifests" / name for name in (TEMPLATE_FILE, WORKFLOW_FILE)]
        with local_storage(pipeline, environ) as storage:
            yield storage, run_dir, manifests
        return
    run_dir = run_directory(pipeline)
    data_uri = pipeline.data.uri
    key = input_key(data_uri)
    staged = staged_uri(pipeline.storage.bucket, data_uri, key)
    with ThreadPoolExecutor(max_workers=1) as background:
        compiled = background.submit(compile_local, config, staged, run_dir)
        with local_storage(pipeline, environ) as storage:
            upload_input(storage.store, data_uri, key)
            yield storage, run_dir, compiled.result()


def run_pipeline(config: LoadedConfig, console: Console, resume: str | None = None) -> int:
    """Stage the data, compile, execute locally, print the summary; the exit code says how
    it went (`report`). With `resume`, run that interrupted run again."""
    pipeline = config.pipeline
    environ = dict(os.environ)
    secrets = signing_secrets(config)
    with prepared_run(config, environ, resume) as (storage, run_dir, manifests):
        template, workflow = (load_manifest(path) for path in manifests[:2])
        context = engine_context(config, storage, run_dir, environ, secrets)
        console.print(f"manifests: {run_dir / 'manifests'}", highlight=False, markup=False)
        with ConsoleView(console) as view, watch_store(storage.access, pipeline) as store_died:
            try:
                result = execute(workflow, template, context, view, resume)
            except KeyboardInterrupt:
                resume_hint = f"mlpipe run --resume {view.workflow_name}"
                if store_died.is_set():
                    raise store_death(storage.access, pipeline, resume_hint) from None
                raise RunInterrupted(
                    f"interrupted: every task was stopped; to go on: {resume_hint}"
                ) from None
            # A task may fail on the dead store before the watcher's next look: same cause.
            pid = storage.access.pid
            if not result.succeeded and pid is not None and not is_alive(pid):
                raise store_death(storage.access, pipeline, f"mlpipe run --resume {result.name}")
    return report(result, console)


def store_death(access: S3Access, pipeline: PipelineConfig, resume_hint: str) -> StorageError:
    return StorageError(
        f"the embedded S3 server (pid {access.pid}) died during the run; its log: "
        f"{pipeline.storage.data_dir / LOG_FILE}; every task was stopped; after fixing it: "
        f"{resume_hint}"
    )


@contextmanager
def watch_store(access: S3Access, pipeline: PipelineConfig) -> Iterator[threading.Event]:
    """Stop the run at once when the embedded S3 server dies, instead of letting every task
    fail on it and retries wait out their backoff. The engine stops on KeyboardInterrupt
    (it kills every task first); the event tells that apart from a real Ctrl-C."""
    died = threading.Event()
    done = threading.Event()

    def watch(pid: int) -> None:
        while not done.wait(STORE_POLL_SECONDS):
            if not is_alive(pid):
                died.set()
                _thread.interrupt_main(WATCHER_SIGNAL)
                return

    # The watcher interrupts through a signal of its own: SIGINT may be ignored (a run started
    # with `&` or nohup), and interrupt_main does nothing for an ignored signal.
    previous = signal.signal(WATCHER_SIGNAL, signal.default_int_handler)
    watcher = None
    if access.pid is not None:
        watcher = threading.Thread(target=watch, args=(access.pid,), daemon=True)
        watcher.start()
    try:
        yield died
    finally:
        done.set()
        if watcher is not None:
            watcher.join()
        signal.signal(WATCHER_SIGNAL, previous)


def with_overrides(config: LoadedConfig, values: dict[str, object]) -> LoadedConfig:
    """The same config with some keys replaced, validated like a user's --set."""
    raw = config.pipeline.model_dump(mode="json")
    for key, value in values.items():
        node = raw
        *sections, leaf = key.split(".")
        for section in sections:
            node = node[section]
        node[leaf] = value
    return LoadedConfig(path=config.path, pipeline=PipelineConfig.model_validate(raw))
