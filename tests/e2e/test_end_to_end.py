"""`mlpipe run` end to end: the compiled manifest through the local engine, real S3."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from steps.core.store import ArtifactStore
from steps.deploy.local import read_server, stop_server
from tests.support.commands import mlpipe
from tests.support.paths import ROOT
from tests.support.s3 import external
from workflows.s3server import EmbeddedS3

FAST = ["--set", "train.rounds=15", "--set", "audit.min_rows=100"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sample.parquet"
    result = mlpipe("data", "synth", "--rows", "4000", "--out", str(path), "--seed", "3")
    assert result.returncode == 0, result.stderr
    return path


def test_the_readme_command_from_a_fresh_folder_runs_the_whole_pipeline(
    sample: Path, tmp_path: Path
) -> None:
    """`mlpipe run` as a new user runs it: the default config's relative paths (data, S3 data,
    workdir: relative to config/) and a relative `--set` (relative to the working directory),
    while every step runs in its own task folder. The same run (each costs tens of seconds)
    is then checked for every artifact, the model it keeps serving, and its reports."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "config", project / "config")
    (project / "data").mkdir()
    shutil.copy(sample, project / "data" / "sample.parquet")
    s3_dir, runs, serving_dir = (
        project / ".mlpipe" / "s3",
        project / ".mlpipe" / "runs",
        project / "serving",
    )
    try:
        result = mlpipe("run", *FAST, "--set", "deploy.state_dir=serving", cwd=project)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "Succeeded" in result.stdout
        for step in (
            "audit",
            "provenance",
            "train",
            "quantize",
            "evaluate",
            "model-card",
            "deploy",
        ):
            assert step in result.stdout
        status = mlpipe("deploy", "status", "--set", "deploy.state_dir=serving", cwd=project)
        assert status.returncode == 0, status.stderr
        assert "churn" in status.stdout, "the server answers but serves no churn model"
        assert_artifacts(s3_dir, serving_dir, tmp_path)
    finally:
        stop_server(serving_dir)
    status = mlpipe("deploy", "status", "--set", "deploy.state_dir=serving", cwd=project)
    # Stopped: nothing serves what stable.json names, which status reports as a failure.
    assert status.returncode == 1, status.stderr
    assert status.stderr.startswith("error: churn: served nothing but the registry names ")
    assert list(runs.glob("*/*/journal.json"))
    assert s3_dir.is_dir()
    assert not (project / "config" / ".mlpipe").exists()

    # The reports and any artifact, by run name, without starting the store by hand.
    (run,) = re.findall(r"^Succeeded (\S+) in ", result.stdout, re.MULTILINE)
    where = ["--set", f"storage.data_dir={s3_dir}", "--set", f"engine.workdir={runs}"]
    fetched = mlpipe("reports", run, "--out", str(tmp_path / "reports"), *where)
    assert fetched.returncode == 0, fetched.stderr
    paths = [Path(line) for line in fetched.stdout.splitlines()]
    names = {path.name for path in paths}
    assert {"audit-report.html", "evaluation-report.html", "run-summary.json"} <= names, names
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths)
    html = next(path for path in paths if path.name == "audit-report.html")
    got = mlpipe("artifacts", "get", run, "audit", "audit-report", "-o", str(tmp_path / "a.html"))
    assert got.returncode == 2, "the run is not under the default workdir"
    got = mlpipe(
        "artifacts", "get", run, "audit", "audit-report", "-o", str(tmp_path / "a.html"), *where
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "a.html").read_bytes() == html.read_bytes()
    unknown = mlpipe("artifacts", "get", run, "audit", "nope", "-o", str(tmp_path / "b"), *where)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith(f"error: step 'audit' of {run} has no artifact 'nope': ")
    assert "audit-report" in unknown.stderr and "Traceback" not in unknown.stderr


def assert_artifacts(s3_dir: Path, serving_dir: Path, tmp_path: Path) -> None:
    """The server was stopped with the run; its data stays on disk for the next one: every
    artifact, the registry naming the model the detached server keeps serving, its card."""
    with EmbeddedS3(s3_dir) as server:
        store = ArtifactStore(server.endpoint, "mlpipe", server.access_key, server.secret_key)
        keys = store.list("")
        by_suffix = {name: [k for k in keys if k.endswith(name)] for name in EXPECTED}
        for name, found in by_suffix.items():
            assert found, f"no artifact ending in {name} among {len(keys)} keys"
        stable = store.get_json("registry/churn/stable.json")
        onnx_key = by_suffix["model.onnx"][0]
        assert stable["digest"] == store.download_file(onnx_key, tmp_path / "m.onnx")
        server = read_server(serving_dir)  # the run is over; the model keeps serving
        assert server is not None
        served = httpx.get(f"{server.base_url}/v2/models/churn", timeout=5).json()
        assert served["versions"] == [stable["digest"]]
        # The serving version's card sits beside it, about that very file.
        card = store.get_json(f"{stable['version_key']}/model-card.json")
        assert card["model_details"]["version"]["name"] == f"sha256:{stable['digest']}"
        evaluation = json.loads(store.get_bytes(by_suffix["evaluation.json"][0]))
        assert 0.6 < evaluation["metrics"]["auc"] <= 1.0
        assert any(k.startswith("datasets/") and k.endswith("manifest.json") for k in keys)
        assert any(k.startswith("models/") and k.endswith("model.ubj") for k in keys)
        for key in keys:
            if key.endswith((".html", ".json", ".onnx", ".ubj")):
                assert store.get_bytes(key), f"{key} is empty"


EXPECTED = (
    "audit-report.html",
    "audit-result.json",
    "provenance.json",
    "model.onnx",
    "evaluation.json",
    "evaluation-report.html",
    "rollout.json",
    "main.log",
)


def test_a_failing_task_stops_the_run_and_names_its_log(
    sample: Path, tmp_path: Path, s3_env: dict[str, str], store: ArtifactStore
) -> None:
    broken = tmp_path / "no-label.csv"
    pd.read_parquet(sample).drop(columns=["churned"]).to_csv(broken, index=False)
    result = mlpipe(
        "run",
        "--data",
        str(broken),
        *FAST,
        *external(s3_env),
        "--set",
        f"engine.workdir={tmp_path / 'runs'}",
        env=s3_env,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Failed" in result.stdout and "audit" in result.stdout
    assert "main.log" in result.stdout
    keys = store.list("")
    # Nothing downstream of the audit ran: no dataset, no model, no deployment.
    assert not [k for k in keys if k.startswith(("datasets/", "models/", "registry/"))]
    audit_logs = [k for k in keys if "audit" in k and k.endswith("main.log")]
    assert audit_logs and b"churned" in store.get_bytes(audit_logs[0])


def test_a_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    result = mlpipe(
        "run",
        "--data",
        str(missing),
        "--set",
        f"storage.data_dir={tmp_path / 's3'}",
        "--set",
        f"engine.workdir={tmp_path / 'runs'}",
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def run_until(
    args: list[str], cwd: Path, marker: str, timeout: float = 300
) -> tuple[subprocess.Popen[str], list[str]]:
    """`mlpipe run ...` in the background, returned once a line of its output holds `marker`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "workflows.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    assert any(marker in line for line in lines), "".join(lines[-30:])
    return process, lines


def finish(process: subprocess.Popen[str], lines: list[str]) -> str:
    assert process.stdout is not None
    lines += process.stdout.readlines()
    process.wait(timeout=120)
    return "".join(lines)


def test_ctrl_c_stops_every_task_and_prints_the_resume_command(
    sample: Path, tmp_path: Path
) -> None:
    args = ["run", "--data", str(sample), *FAST, "--set", f"storage.data_dir={tmp_path / 's3'}"]
    args += ["--set", f"engine.workdir={tmp_path / 'runs'}"]
    process, lines = run_until(args, ROOT, "provenance started")
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    output = finish(process, lines)
    assert process.returncode == 130, output[-3000:]
    (hint,) = [line for line in output.splitlines() if "mlpipe run --resume" in line]
    assert hint.startswith("error: interrupted: every task was stopped")
    assert "Traceback" not in output and "Event loop is closed" not in output
    run = hint.rsplit(" ", 1)[1]
    assert list((tmp_path / "runs").glob(f"*/{run}/journal.json")), "the hint names no run"
    assert weed_processes(tmp_path / "s3") == []


def test_a_dead_embedded_store_fails_the_run_at_once_with_exit_3(
    sample: Path, tmp_path: Path
) -> None:
    s3_dir = tmp_path / "s3"
    args = ["run", "--data", str(sample), *FAST, "--set", f"storage.data_dir={s3_dir}"]
    args += ["--set", f"engine.workdir={tmp_path / 'runs'}"]
    process, lines = run_until(args, ROOT, "provenance started")
    (weed,) = weed_processes(s3_dir)
    weed.kill()
    killed = time.monotonic()
    output = finish(process, lines)
    assert process.returncode == 3, output[-3000:]
    assert time.monotonic() - killed < 20, "waited for retries instead of failing fast"
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert f"the embedded S3 server (pid {weed.pid}) died" in line
    assert str(s3_dir / "weed.log") in line and "mlpipe run --resume" in line


def weed_processes(data_dir: Path) -> list[psutil.Process]:
    flag = f"-dir={data_dir.resolve()}"
    return [p for p in psutil.process_iter(["cmdline"]) if flag in (p.info["cmdline"] or [])]


def test_a_step_that_exits_2_makes_the_run_exit_2(
    sample: Path, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    """A ragged CSV is bad input in the step that reads it: the run says so with exit 2,
    not the generic 1 of a failed workflow."""
    ragged = tmp_path / "ragged.csv"
    pd.read_parquet(sample).head(500).to_csv(ragged, index=False)
    with ragged.open("a") as handle:
        handle.write("x,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n")
    result = mlpipe(
        "run",
        "--data",
        str(ragged),
        *FAST,
        *external(s3_env),
        "--set",
        f"engine.workdir={tmp_path / 'runs'}",
        env=s3_env,
    )
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Failed" in result.stdout and "exit code 2" in result.stdout
