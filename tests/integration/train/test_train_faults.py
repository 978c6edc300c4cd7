"""A worker killed mid-training: the group fails within its timeout, and the retry of the
whole group (tracker and workers, the `train` DAG template's retryStrategy) succeeds.

Runs the compiled training group with the local engine, the real tracker and worker
processes and the embedded S3; an engine observer SIGKILLs worker 1 of the first attempt
once it reports a trained round. The retried tracker is a new pod with its own IP, so it binds
its port at once: the group's retry backoff is 5 s, not the 60 s TCP TIME_WAIT on one address.
"""

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from steps.core.names import ModelFile, Param, model_prefix
from steps.core.store import ArtifactStore
from tests.support.datasets import churn_frame, write_dataset
from tests.support.paths import LOCAL
from workflows.compiler import compile_manifests
from workflows.config import load_config
from workflows.engine import EngineContext, NodePhase, Observer, run_workflow
from workflows.local_run import S3Access, credentials_secret, step_environment
from workflows.pipeline import TRAIN_GROUP, TaskName
from workflows.s3server import EmbeddedS3

TIMEOUT_SECONDS = 30
"""Bounds the group forming too: the tracker waits this long for workers to start (a tcpSocket
readiness probe used to restart that wait with every connection; the exec probe does not)."""
ROUNDS = 400
"""Enough rounds (no early stopping) that worker 1 is still training when it is killed."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def group_workflow(template: dict[str, Any], dataset_uri: str) -> dict[str, Any]:
    """A Workflow running only the training group of the compiled template."""
    spec = {key: value for key, value in template["spec"].items() if key != "onExit"}
    # Without onExit the exit handler goes too: Argo rejects {{workflow.failures}} elsewhere.
    exit_handler = template["spec"]["onExit"]
    spec["templates"] = [t for t in spec["templates"] if t["name"] != exit_handler]
    arguments = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    entry = {
        "name": "group-only",
        "dag": {
            "tasks": [
                {
                    "name": TaskName.TRAIN,
                    "template": TRAIN_GROUP,
                    "arguments": {
                        "parameters": [
                            {"name": "dataset-uri", "value": dataset_uri},
                            {"name": "dataset-digest", "value": dataset_uri.rsplit("/", 1)[1]},
                            {"name": "train-spec", "value": arguments["train-spec"]},
                            {"name": "workers", "value": arguments["workers"]},
                            {"name": "worker-ranks", "value": arguments["worker-ranks"]},
                        ]
                    },
                }
            ]
        },
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "train-fault-"},
        "spec": {**spec, "entrypoint": "group-only", "templates": [*spec["templates"], entry]},
    }


def worker_pid(dataset_uri: str, rank: int) -> int | None:
    """The running `python -m steps train` process of `rank` on this test's dataset."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in argv and dataset_uri.encode() in argv:
            at = argv.index(b"--rank")
            if argv[at + 1] == str(rank).encode():
                return int(proc.name)
    return None


class KillWorkerOnceTraining(Observer):
    """SIGKILLs worker `rank` of the group's first attempt once it reports a round done (the
    engine's own progress events, read from the task's ARGO_PROGRESS_FILE)."""

    def __init__(self, dataset_uri: str, rank: int) -> None:
        self.dataset_uri = dataset_uri
        self.node = f"train(0).worker({rank}:{rank})"
        self.rank = rank
        self.killed: list[float] = []

    def node_progress(self, path: str, done: int, total: int) -> None:
        if self.killed or done == 0 or not path.endswith(self.node):
            return
        pid = worker_pid(self.dataset_uri, self.rank)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self.killed.append(time.monotonic())


def test_a_killed_worker_fails_the_group_in_time_and_the_retry_trains_the_model(
    s3_server: EmbeddedS3, store: ArtifactStore, tmp_path: Path
) -> None:
    config = load_config(
        LOCAL,
        [
            f"train.tracker_port={free_port()}",
            f"train.timeout_seconds={TIMEOUT_SECONDS}",
            f"train.rounds={ROUNDS}",
            "train.early_stopping_rounds=null",
            "train.eta=0.01",
            "provenance.memoize=false",
            f"storage.bucket={store.bucket}",
        ],
    )
    uri = write_dataset(store, churn_frame(1500, seed=5), shards=2)
    access = S3Access(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)
    context = EngineContext(
        store=store,
        key_format=config.pipeline.storage.key_format,
        workdir=tmp_path,
        parallelism=3,
        env={**os.environ, **step_environment(access, config.pipeline)},
        secrets={config.pipeline.storage.credentials_secret: credentials_secret(access)},
        stop_grace_seconds=2.0,
    )
    manifest = group_workflow(compile_manifests(config).template, uri)
    killer = KillWorkerOnceTraining(uri, rank=1)
    result = run_workflow(manifest, {}, context, killer)
    killed = killer.killed
    assert killed, f"worker 1 was never seen training: {result.phase} {result.message}"
    assert result.succeeded, result.message

    group = result.node(TaskName.TRAIN)
    assert group.attempts == 2
    survivor, killed_worker = (result.node(f"train(0).worker({i}:{i})") for i in (0, 1))
    assert killed_worker.exit_code == -signal.SIGKILL
    assert (survivor.phase, survivor.exit_code) == (NodePhase.FAILED, 3)
    assert survivor.finished_at is not None
    # The survivor fails at its next collective call, well within the timeout (+ start-up).
    lost = survivor.finished_at.timestamp() - (time.time() - (time.monotonic() - killed[0]))
    assert lost < TIMEOUT_SECONDS
    log = store.get_bytes(survivor.log_keys[-1]).decode()
    assert "worker 0 lost its training group" in log and "Stack trace" not in log

    retry = [result.node(f"train(1).{name}") for name in ("tracker", "worker(0:0)", "worker(1:1)")]
    assert all(node.phase is not NodePhase.FAILED for node in retry)
    digest = group.parameters[Param.MODEL_DIGEST]
    assert {node.parameters[Param.MODEL_DIGEST] for node in retry[1:]} == {digest}
    assert store.exists(f"{model_prefix(digest)}/{ModelFile.BOOSTER.value}")
