"""`mlpipe run`: compile the pipeline for this config and execute the YAML locally.

The run sees exactly what a cluster would: the compiled manifest files on disk are read back
and handed to the local engine, with an embedded (or configured) S3 server behind them.
"""

import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from steps.names import Env
from steps.store import ArtifactStore
from workflows.compiler import compile_manifests, load_manifest, write_manifests
from workflows.config import ConfigError, LoadedConfig, PipelineConfig
from workflows.console import ConsoleView, locations_table, summary_table
from workflows.engine import EngineContext, ManifestError, run_workflow
from workflows.s3server import EmbeddedS3, read_state

INPUTS_PREFIX = "inputs"


@dataclass(frozen=True)
class S3Access:
    """An S3 endpoint with credentials: what the steps' environment and secrets carry."""

    endpoint: str
    access_key: str
    secret_key: str


@contextmanager
def s3_for(pipeline: PipelineConfig, environ: dict[str, str]) -> Iterator[S3Access]:
    """The embedded server for the run's duration, or the configured external endpoint."""
    storage = pipeline.storage
    if storage.mode == "embedded":
        # A server left up by `mlpipe store up` owns the data folder: share it, never race it.
        running = read_state(storage.data_dir)
        if running is not None:
            yield S3Access(running.endpoint, running.access_key, running.secret_key)
            return
        with EmbeddedS3(storage.data_dir) as server:
            yield S3Access(server.endpoint, server.access_key, server.secret_key)
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


def stage_data(store: ArtifactStore, data_uri: str) -> str:
    """A local dataset is uploaded under a content-addressed key; the steps only read S3."""
    if data_uri.startswith("s3://"):
        return data_uri
    path = Path(data_uri)
    if not path.is_file():
        raise ConfigError(f"key 'data.uri': no such file: {path}")
    digest = _file_sha256(path)
    key = f"{INPUTS_PREFIX}/{digest}/{path.name}"
    if not store.exists(key):
        store.upload_file(path, key)
    return store.uri(key)


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_directory(pipeline: PipelineConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return pipeline.engine.workdir / stamp


def run_pipeline(config: LoadedConfig, console: Console) -> int:
    """Stage the data, compile, execute locally, print the summary; the exit code says how
    it went (0 succeeded, 1 a task failed)."""
    pipeline = config.pipeline
    environ = dict(os.environ)
    with s3_for(pipeline, environ) as access:
        store = ArtifactStore(
            access.endpoint,
            pipeline.storage.bucket,
            access.access_key,
            access.secret_key,
            pipeline.storage.region,
        )
        store.ensure_bucket()
        data_uri = stage_data(store, pipeline.data.uri)
        # The tracker listens on a fixed port in the manifest (a pod has its own IP); on one
        # machine two runs would share loopback, so each local run compiles with a free one.
        run_config = with_overrides(
            config, {"data.uri": data_uri, "train.tracker_port": free_port()}
        )
        run_dir = run_directory(pipeline)
        manifests = write_manifests(compile_manifests(run_config), run_dir / "manifests")
        template, workflow = (load_manifest(path) for path in manifests[:2])
        context = EngineContext(
            store=store,
            key_format=pipeline.storage.key_format,
            workdir=run_dir,
            # The collective needs every worker at once: fewer slots would deadlock it.
            parallelism=max(
                min(pipeline.engine.parallelism, os.cpu_count() or 1), pipeline.train.workers
            ),
            env={**environ, **step_environment(access, pipeline)},
            secrets={pipeline.storage.credentials_secret: credentials_secret(access)},
        )
        console.print(f"manifests: {run_dir / 'manifests'}", highlight=False)
        try:
            with ConsoleView(console) as view:
                result = run_workflow(
                    workflow, {template["metadata"]["name"]: template}, context, view
                )
        except ManifestError as error:
            raise ConfigError(f"the compiled manifest cannot run locally: {error}") from error
    console.print(summary_table(result))
    console.print(locations_table(result))
    if not result.succeeded:
        console.print(f"[bold red]{result.phase}[/]: {result.message}", highlight=False)
        return 1
    console.print(f"[bold green]Succeeded[/] {result.name} in {result.duration:.1f}s")
    return 0


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
