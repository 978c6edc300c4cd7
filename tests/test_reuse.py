"""The local engine reusing finished work: Argo's `memoize` (its cache kept in the bucket)
and `run_workflow(resume=...)` from the run's journal. Small `python -c` workflows."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from steps.core.store import ArtifactStore
from tests import test_engine_runs
from tests.test_engine_runs import MOUNT, dag, py, run, task, workflow
from workflows.engine import EngineContext, ManifestError, NodePhase
from workflows.engine.reuse import JOURNAL_FILE

# Writes a fresh random token as output parameter `token` and artifact `blob`; each run of
# the task gives a different value, so equal values mean the outputs were reused.
PRODUCE = """
import os, pathlib, uuid
out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True, exist_ok=True)
token = uuid.uuid4().hex
(out / 'token').write_text(token)
(out / 'blob.txt').write_text(token * 1000)
"""
# Fails until the marker file (argv[1]) exists; then echoes the artifact it got.
CONSUME = """
import os, pathlib, sys
if not pathlib.Path(sys.argv[1]).exists():
    sys.exit('marker missing')
got = (pathlib.Path(os.environ['IN']) / 'blob.txt').read_text()
out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True, exist_ok=True)
(out / 'seen').write_text(got[:32])
"""


def memoized_producer(key: str = "tok-{{inputs.parameters.x}}") -> dict[str, Any]:
    template = py("produce", PRODUCE, inputs=("x",), outputs=("token",))
    template["outputs"]["artifacts"] = [
        {"name": "blob", "path": f"{MOUNT}/out/blob.txt", "archive": {"none": {}}}
    ]
    template["memoize"] = {"key": key, "maxAge": "1h", "cache": {"configMap": {"name": "memo"}}}
    return template


def consumer() -> dict[str, Any]:
    template = py("consume", CONSUME, "{{inputs.parameters.marker}}", inputs=("marker",),
                  outputs=("seen",))  # fmt: skip
    template["inputs"]["artifacts"] = [{"name": "blob", "path": f"{MOUNT}/in/blob.txt"}]
    return template


ctx = test_engine_runs.ctx  # the engine fixture: a fresh bucket and workdir per test

BLOB = {"blob": "{{tasks.produce.outputs.artifacts.blob}}"}


def pipeline(x: str, marker: Path, producer: dict[str, Any] | None = None) -> dict[str, Any]:
    consume = task("consume", "consume", "produce", {"marker": str(marker)}, BLOB)
    main = dag("main", task("produce", "produce", params={"x": x}), consume)
    return workflow(main, producer or memoized_producer(), consumer())


def test_a_memoized_task_is_skipped_on_a_hit_and_says_so(
    ctx: EngineContext, store: ArtifactStore, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    first = run(pipeline("a", marker), ctx)
    second = run(pipeline("a", marker), ctx)
    other = run(pipeline("b", marker), ctx)
    assert first.succeeded and second.succeeded and other.succeeded
    token = first.node("produce").parameters["token"]
    hit = second.node("produce")
    assert (hit.reused, hit.phase) == ("memoized", NodePhase.SUCCEEDED)
    assert hit.parameters["token"] == token
    assert f"computed by {first.name}" in hit.message
    assert hit.log_key is None, "a cache hit runs no pod"
    assert second.node("consume").parameters["seen"] == token
    assert other.node("produce").reused == ""
    assert other.node("produce").parameters["token"] != token
    entry = store.get_json("memo/memo/tok-a.json")
    assert entry["workflow"] == first.name


def test_an_old_entry_or_a_lost_artifact_is_a_miss(
    ctx: EngineContext, store: ArtifactStore, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    first = run(pipeline("a", marker), ctx)
    entry = store.get_json("memo/memo/tok-a.json")
    entry["created"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    store.put_json("memo/memo/tok-a.json", entry)
    expired = run(pipeline("a", marker), ctx)
    assert expired.node("produce").reused == ""
    store.put_bytes(expired.node("produce").artifacts["blob"], b"")  # still there: a hit
    assert run(pipeline("a", marker), ctx).node("produce").reused == "memoized"
    blob = store.get_json("memo/memo/tok-a.json")["outputs"]["artifacts"]["blob"]["key"]
    store._client.delete_object(Bucket=store.bucket, Key=blob)  # garbage-collected
    assert run(pipeline("a", marker), ctx).node("produce").reused == ""
    assert first.succeeded


def test_an_invalid_cache_key_is_an_error_naming_it(ctx: EngineContext, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.touch()
    result = run(pipeline("a/b", marker), ctx)
    node = result.node("produce")
    assert node.phase is NodePhase.ERROR
    assert "memoize.key 'tok-a/b' is not a valid cache key" in node.message
    assert result.node("consume").phase is NodePhase.OMITTED or not any(
        n.path == "consume" for n in result.nodes
    )


def test_resume_reuses_finished_tasks_and_reruns_the_rest(
    ctx: EngineContext, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    producer = memoized_producer()
    del producer["memoize"]  # only the journal may explain a reuse here
    failed = run(pipeline("a", marker, producer), ctx)
    assert not failed.succeeded
    journal = json.loads((ctx.workdir / failed.name / JOURNAL_FILE).read_text())
    assert list(journal["nodes"]) == [f"{failed.name}.produce"]

    marker.touch()
    resumed = run(pipeline("a", marker, producer), ctx, resume=failed.name)
    assert resumed.succeeded
    assert (resumed.name, resumed.uid) == (failed.name, failed.uid)
    produce = resumed.node("produce")
    assert produce.reused == "resumed"
    assert produce.parameters["token"] == failed.node("produce").parameters["token"]
    assert resumed.node("consume").parameters["seen"] == produce.parameters["token"]
    with pytest.raises(ManifestError, match="no run to resume"):
        run(pipeline("a", marker, producer), ctx, resume="never-ran")


def test_a_retried_dag_resumes_as_one_unit(ctx: EngineContext, tmp_path: Path) -> None:
    """Inside a DAG with a retryStrategy (a tracker and its workers) nothing is reused alone."""
    marker = tmp_path / "marker"
    producer = memoized_producer()
    del producer["memoize"]
    consume = task("consume", "consume", "produce", {"marker": str(marker)}, BLOB)
    group = dag(
        "group", task("produce", "produce", params={"x": "a"}), consume, retryStrategy={"limit": 0}
    )
    manifest = workflow(dag("main", task("group", "group")), group, producer, consumer())
    failed = run(manifest, ctx)
    assert not failed.succeeded
    marker.touch()
    resumed = run(manifest, ctx, resume=failed.name)
    assert resumed.succeeded
    inner = resumed.node("group(0).produce")
    assert inner.reused == ""
    assert inner.parameters["token"] != failed.node("group(0).produce").parameters["token"]
