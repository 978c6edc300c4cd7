"""The onExit run summary (`python -m steps summary`) against real S3 and a real webhook.

The run's folder is laid out as Argo's executor leaves it: `<run>/<pod>/...` objects with
no digest metadata, the step's `parameters/` files, its HTML reports and main.log.
"""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from steps.core.names import Env
from steps.core.specs import SummarySpec
from steps.core.store import ArtifactStore
from steps.summary.step import NOT_RUN, parse_failures, run_summary
from workflows.engine.naming import pod_name
from workflows.s3server import EmbeddedS3

RUN = "churn-training-x7k2p"
TEMPLATES = ["audit", "provenance", "train-worker", "evaluate", "deploy"]
AUDIT = pod_name(RUN, f"{RUN}.audit", "audit")
WORKER_0 = pod_name(RUN, f"{RUN}.train(0).worker(0:0)", "train-worker")
WORKER_1 = pod_name(RUN, f"{RUN}.train(0).worker(1:1)", "train-worker")
EVALUATE = pod_name(RUN, f"{RUN}.evaluate", "evaluate")
FAILURES = json.dumps(
    [
        {
            "displayName": "evaluate",
            "message": "exit code 1: AUC 0.61 < min_auc 0.75 <script>",
            "templateName": "evaluate",
            "phase": "Failed",
            "podName": EVALUATE,
            "finishedAt": "2026-01-01T00:02:00Z",
        },
        {
            "displayName": "pipeline",
            "message": "child failed",
            "templateName": "pipeline",
            "phase": "Failed",
            "podName": f"{RUN}-pipeline-1",
            "finishedAt": "2026-01-01T00:02:00Z",
        },
    ]
)


def argo_upload(server: EmbeddedS3, bucket: str, objects: dict[str, str]) -> None:
    """Objects as Argo's executor writes them: plain PUTs, no sha256 metadata."""
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body.encode())


@pytest.fixture
def run_folder(s3_server: EmbeddedS3, store: ArtifactStore) -> ArtifactStore:
    argo_upload(
        s3_server,
        store.bucket,
        {
            f"{RUN}/{AUDIT}/main.log": "audit ok",
            f"{RUN}/{AUDIT}/parameters/critical_failures": "0",
            f"{RUN}/{AUDIT}/parameters/rows": "5000",
            f"{RUN}/{AUDIT}/audit-report.html": "<html></html>",
            f"{RUN}/{WORKER_0}/parameters/valid_auc": "0.85",
            f"{RUN}/{WORKER_1}/parameters/valid_auc": "0.85",
            f"{RUN}/{EVALUATE}/parameters/auc": "0.61",
            f"{RUN}/{EVALUATE}/evaluation-report.html": "<html></html>",
            f"{RUN}-other/{RUN}-other-audit-1/main.log": "another run, same prefix start",
        },
    )
    return store


class Hook:
    """A webhook receiver on loopback that answers with `status`."""

    def __init__(self, status: int) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook(200)
    yield receiver
    receiver.close()


def spec(**extra: Any) -> SummarySpec:
    return SummarySpec(templates=TEMPLATES, namespace="mlpipe", **extra)


def test_every_template_gets_its_pods_status_outputs_and_reports(
    run_folder: ArtifactStore, tmp_path: Path
) -> None:
    summary = run_summary(
        run_folder,
        f"{RUN}/",
        RUN,
        "Failed",
        parse_failures(FAILURES),
        spec(argo_ui="https://argo.example:2746/"),
        None,
        tmp_path,
    )
    rows = [(p.template, p.pod, p.phase) for p in summary.pods]
    assert rows == [
        ("audit", AUDIT, "Succeeded"),
        ("provenance", None, NOT_RUN),
        *sorted([("train-worker", WORKER_0, "Succeeded"), ("train-worker", WORKER_1, "Succeeded")]),
        ("evaluate", EVALUATE, "Failed"),
        ("deploy", None, NOT_RUN),
    ]
    audit = summary.pods[0]
    assert audit.outputs == {"critical_failures": "0", "rows": "5000"}
    [report] = audit.reports
    assert report.uri == f"s3://{run_folder.bucket}/{RUN}/{AUDIT}/audit-report.html"
    node = f"{RUN}-{AUDIT.rsplit('-', 1)[1]}"
    assert report.ui_url == (
        f"https://argo.example:2746/artifact-files/mlpipe/workflow/{RUN}/{node}/outputs/audit-report"
    )
    evaluate = next(p for p in summary.pods if p.template == "evaluate")
    assert evaluate.message.startswith("exit code 1: AUC 0.61") and evaluate.outputs == {
        "auc": "0.61"
    }
    assert summary.url == f"https://argo.example:2746/workflows/mlpipe/{RUN}"
    assert summary.notification == "not configured"
    written = json.loads((tmp_path / "run-summary.json").read_text())
    assert written["status"] == "Failed" and len(written["failures"]) == 2
    page = (tmp_path / "run-summary.html").read_text()
    assert "<script" not in page, "messages are escaped"
    assert "&lt;script&gt;" in page and report.ui_url in page
    assert (tmp_path / "parameters" / "notified").read_text() == "false"


def test_a_webhook_gets_one_short_message(
    run_folder: ArtifactStore, tmp_path: Path, hook: Hook
) -> None:
    summary = run_summary(
        run_folder, f"{RUN}/", RUN, "Failed", parse_failures(FAILURES), spec(), hook.url, tmp_path
    )
    assert summary.notification == "sent"
    [body] = hook.bodies
    assert body["text"] == (
        f"mlpipe run {RUN}: Failed; evaluate failed: exit code 1: AUC 0.61 < min_auc 0.75 <script>"
    )
    assert body["status"] == "Failed" and body["workflow"] == RUN
    assert (tmp_path / "parameters" / "notified").read_text() == "true"


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steps", "summary", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_a_failing_webhook_is_reported_but_does_not_fail_the_step(
    run_folder: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    broken = Hook(500)
    try:
        result = cli(
            [
                "--workflow-name",
                RUN,
                "--workflow-status",
                "Succeeded",
                "--workflow-failures",
                "null",
                "--run-prefix",
                f"{RUN}/",
                "--summary-spec",
                spec().model_dump_json(),
                "--out",
                str(tmp_path),
            ],
            {**s3_env, Env.WEBHOOK_URL.value: broken.url},
        )
    finally:
        broken.close()
    assert result.returncode == 0, result.stderr
    assert "notification failed: the webhook answered HTTP 500" in result.stderr
    assert "secret-path" not in result.stderr + result.stdout, "the URL is a credential"
    assert result.stdout.strip() == f"mlpipe run {RUN}: Succeeded"
    written = json.loads((tmp_path / "run-summary.json").read_text())
    assert written["notification"] == "failed: the webhook answered HTTP 500"


def test_bad_input_is_one_line_and_exit_2(s3_env: dict[str, str], tmp_path: Path) -> None:
    base = ["--workflow-name", RUN, "--workflow-status", "Failed", "--out", str(tmp_path)]
    broken_json = cli(
        [*base, "--workflow-failures", "[{", "--run-prefix", f"{RUN}/", "--summary-spec", "{}"],
        s3_env,
    )
    assert broken_json.returncode == 2
    assert broken_json.stderr.strip().startswith("error: invalid SummarySpec: templates")
    failures = cli(
        [
            *base,
            "--workflow-failures",
            "[{",
            "--run-prefix",
            f"{RUN}/",
            "--summary-spec",
            spec().model_dump_json(),
        ],
        s3_env,
    )
    assert failures.returncode == 2 and "--workflow-failures is not JSON" in failures.stderr
    empty = cli([*base, "--run-prefix", "/", "--summary-spec", spec().model_dump_json()], s3_env)
    assert empty.returncode == 2 and "would list the whole bucket" in empty.stderr
    assert not (tmp_path / "run-summary.json").exists(), "nothing half-written"
