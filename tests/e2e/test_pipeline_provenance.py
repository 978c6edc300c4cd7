"""The provenance chain, memoization and resume on the real pipeline (`mlpipe run`, real S3).

One scenario, because each pipeline run costs tens of seconds: a run is SIGKILLed (engine
and every task process group) while training, resumed, re-run on the same data (training
memoized), and both runs' chains verify until an artifact is tampered with.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from steps.core.store import ArtifactStore
from steps.deploy.local import stop_server
from tests.e2e.test_end_to_end import ROOT, mlpipe
from tests.support.s3 import external

RUN = ["--set", "train.rounds=10", "--set", "audit.min_rows=100",
       "--set", "provenance.code_version=test-chain"]  # fmt: skip


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sample.parquet"
    result = mlpipe("data", "synth", "--rows", "3000", "--out", str(path), "--seed", "5")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(autouse=True)
def _stop_stable_server(tmp_path: Path) -> Iterator[None]:
    """A deploy leaves its stable model server running detached under the test's tmp dir."""
    yield
    stop_server(tmp_path / "serving")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (tasks run in their own sessions, so by parentage)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def kill_everything(engine: subprocess.Popen[bytes]) -> None:
    """SIGKILL the engine's process group and every task's, as a power cut would."""
    groups = {os.getpgid(engine.pid)}
    for pid in descendants(engine.pid):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    engine.wait(timeout=30)


def test_killed_run_resumes_memoizes_and_verifies_until_tampered(
    sample: Path, tmp_path: Path, s3_env: dict[str, str], store: ArtifactStore
) -> None:
    workdir = tmp_path / "runs"
    settings = [*RUN, *external(s3_env), "--set", f"engine.workdir={workdir}",
                "--set", f"deploy.state_dir={tmp_path / 'serving'}"]  # fmt: skip
    log = (tmp_path / "killed.log").open("wb")
    engine = subprocess.Popen(
        [sys.executable, "-m", "workflows.cli", "run", "--data", str(sample), *settings],
        cwd=ROOT, env={**os.environ, **s3_env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not list(workdir.glob("*/churn-training-*/*-train-worker-*")):
        assert engine.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.1)
    kill_everything(engine)
    [run_dir] = workdir.glob("*/churn-training-*")
    name = run_dir.name
    assert not store.list("registry/"), "the killed run got as far as deploying"

    resumed = mlpipe("run", "--resume", name, *settings, env=s3_env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "audit Succeeded (resumed)" in resumed.stdout
    assert "provenance Succeeded (resumed)" in resumed.stdout
    assert "train(0).worker(0:0) Succeeded" in resumed.stdout, "training ran again"
    assert f"Succeeded {name}" in resumed.stdout

    again = mlpipe("run", "--data", str(sample), *settings, env=s3_env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "train Succeeded (memoized)" in again.stdout
    assert "worker(0:0)" not in again.stdout
    second = next(p.name for p in workdir.glob("*/churn-training-*") if p.name != name)

    # The second run's chain leads into the first for its memoized model: the model's own
    # statement, and the provenance statement of the data that model was trained on.
    # Seven attested steps: audit, provenance, train, quantize, evaluate, model-card, deploy.
    for run, statements in ((name, 7), (second, 8)):
        verified = mlpipe("provenance", "verify", run, *settings, env=s3_env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"{statements} statements" in verified.stdout
    shown = mlpipe("provenance", "show", second, *settings, env=s3_env).stdout
    assert f"2. train (workflow {name}" in shown, shown
    assert shown.count(f"(workflow {second}") == 6

    shard = next(k for k in store.list("datasets/") if k.endswith("train/part-00000.parquet"))
    store.put_bytes(shard, store.get_bytes(shard) + b"\0")
    tampered = mlpipe("provenance", "verify", second, *settings, env=s3_env)
    assert tampered.returncode == 1
    assert "train/part-00000.parquet" in tampered.stderr
    assert "was changed" in tampered.stderr


def test_bad_data_stops_at_the_audit_and_writes_nothing_downstream(
    sample: Path, tmp_path: Path, s3_env: dict[str, str], store: ArtifactStore
) -> None:
    frame = pd.read_parquet(sample)
    copies = frame.sample(frac=0.3, random_state=1)
    copies["customer_id"] = copies["customer_id"] + "-dup"
    bad = tmp_path / "duplicated.parquet"
    pd.concat([frame, copies]).to_parquet(bad, index=False)
    settings = [*RUN, *external(s3_env), "--set", f"engine.workdir={tmp_path / 'runs'}"]
    result = mlpipe("run", "--data", str(bad), *settings, env=s3_env)
    assert result.returncode == 1
    assert "duplicated rows" in result.stdout
    keys = store.list("")
    assert not [k for k in keys if k.startswith(("datasets/", "models/", "registry/", "memo/"))]
    assert [k for k in keys if k.endswith("audit-report.html")]
