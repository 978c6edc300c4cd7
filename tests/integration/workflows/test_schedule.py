"""`mlpipe schedule`: run-once and simulate through the local engine on real S3, and apply
against an HTTP server that answers like Argo's CronWorkflow API."""

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.commands import mlpipe


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("5:corrupt", "event corrupt on day 5: days run 1 to --days (3)"),
        ("2:meteor", "--event '2:meteor': expected DAY:KIND[=ARGUMENT]"),
        ("2:concept", "--event '2:concept': a concept event needs an argument"),
    ],
)
def test_simulate_refuses_a_bad_event_before_starting_anything(
    event: str, message: str, tmp_path: Path
) -> None:
    result = mlpipe(
        "schedule", "simulate", "--days", "3", "--event", event, "--set",
        f"storage.data_dir={tmp_path / 's3'}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "s3").exists()


class FakeArgo(BaseHTTPRequestHandler):
    """Argo's CronWorkflow endpoints, holding one namespace in memory."""

    crons: ClassVar[dict[str, dict[str, Any]]] = {}
    calls: ClassVar[list[tuple[str, str, str | None, dict[str, Any] | None]]] = []
    token = "Bearer s3cret"

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        recorded = copy.deepcopy(body)
        self.calls.append((method, self.path, self.headers.get("authorization"), recorded))
        if self.headers.get("authorization") != self.token:
            self._answer(401, {"code": 16, "message": "token not valid"})
            return
        name = self.path.rsplit("/", 1)[-1]
        if method == "GET":
            if name in self.crons:
                self._answer(200, self.crons[name])
            else:
                self._answer(404, {"code": 5, "message": f"cronworkflows {name!r} not found"})
            return
        cron = body["cronWorkflow"] if body else {}
        cron["metadata"]["resourceVersion"] = str(len(self.calls))
        self.crons[cron["metadata"]["name"]] = cron
        self._answer(200, cron)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def argo() -> Iterator[str]:
    FakeArgo.crons, FakeArgo.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeArgo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_apply_creates_then_updates_the_cron_in_place(argo: str) -> None:
    args = ["schedule", "apply", "--set", f"argo.server={argo}"]
    created = mlpipe(*args, env={"ARGO_TOKEN": "s3cret"})
    assert created.returncode == 0, created.stderr
    assert "created CronWorkflow retraining-cron in namespace mlpipe" in created.stdout
    (method, path, _, body), *_ = [call for call in FakeArgo.calls if call[0] == "POST"]
    assert path == "/api/v1/cron-workflows/mlpipe"
    assert body is not None and body["cronWorkflow"]["spec"]["concurrencyPolicy"] == "Forbid"

    updated = mlpipe(*args, "--set", "schedule.suspend=true", env={"ARGO_TOKEN": "s3cret"})
    assert updated.returncode == 0, updated.stderr
    assert "updated CronWorkflow retraining-cron" in updated.stdout
    method, path, _, body = FakeArgo.calls[-1]
    assert (method, path) == ("PUT", "/api/v1/cron-workflows/mlpipe/retraining-cron")
    assert body is not None
    # The update carries the version it replaces, so a concurrent change is not overwritten.
    assert body["cronWorkflow"]["metadata"]["resourceVersion"] == "2"
    assert body["cronWorkflow"]["spec"]["suspend"] is True


def test_apply_with_a_rejected_token_is_a_clear_error(argo: str) -> None:
    result = mlpipe(
        "schedule", "apply", "--set", f"argo.server={argo}", env={"ARGO_TOKEN": "wrong"}
    )
    assert result.returncode == 2
    assert (
        "rejected the credentials (HTTP 401" in result.stderr and "Traceback" not in result.stderr
    )
    assert not FakeArgo.crons
