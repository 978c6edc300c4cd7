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
from rich.console import Console

from steps.core.store import ArtifactStore
from steps.data import synth
from steps.deploy.local import stop_server
from tests import test_end_to_end as end_to_end
from tests.stable_model import register_stable_model
from tests.test_end_to_end import mlpipe
from workflows.config import load_config
from workflows.simulate import Event, EventKind, Scenario, simulate

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "train.rounds=10", "--set", "audit.min_rows=100"]


def external(s3_env: dict[str, str], tmp_path: Path) -> list[str]:
    """Settings for a run against the test's bucket on the session's SeaweedFS."""
    return [
        *end_to_end.external(s3_env),
        "--set",
        f"engine.workdir={tmp_path / 'runs'}",
        "--set",
        f"deploy.state_dir={tmp_path / 'serving'}",
    ]


@pytest.fixture(autouse=True)
def _stop_stable_server(tmp_path: Path) -> Iterator[None]:
    """A deploy leaves its stable model server running detached under the test's tmp dir."""
    yield
    stop_server(tmp_path / "serving")


def test_run_once_without_drift_checks_and_ends_without_training(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    register_stable_model(store, synth.generate(6000, seed=1))
    registered = set(store.list(""))  # the stable model, with its provenance statement
    data = tmp_path / "recent.parquet"
    synth.generate(3000, seed=21).to_parquet(data)
    result = mlpipe(
        "schedule", "run-once", "--data", str(data), *FAST, *external(s3_env, tmp_path), env=s3_env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no retraining: no drift, decay or age trigger" in result.stdout
    assert "when 'false == true' evaluated false" in result.stdout
    keys = set(store.list("")) - registered
    # The check's evidence is in the run's folder; no new dataset or model was made.
    assert any(k.startswith("retraining-cron-") and k.endswith("drift-report.html") for k in keys)
    assert not [k for k in keys if "/provenance" in k or k.endswith("rollout.json")]


def test_run_once_with_a_window_it_cannot_judge_fails_before_training(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    register_stable_model(store, synth.generate(3000, seed=1))
    before = set(store.list(""))
    data = tmp_path / "recent.parquet"
    synth.generate(1000, seed=21).assign(referrer="web").to_parquet(data)
    result = mlpipe(
        "schedule", "run-once", "--data", str(data), *FAST, *external(s3_env, tmp_path), env=s3_env
    )
    # A column the stable model never saw is bad input to the drift check: the run says so.
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "drift-check failed" in result.stdout and "referrer" in result.stdout
    assert "retrain" in result.stdout and "Omitted" in result.stdout
    made = set(store.list("")) - before
    assert not [k for k in made if k.startswith(("datasets/", "models/", "registry/"))]


def test_simulate_retrains_on_drift_not_before_refuses_corrupt_data_and_retries_an_outage(
    tmp_path: Path,
) -> None:
    """Five short days: the first model, a quiet day (kept), drift with a changed concept
    (retrained, and the canary promotes the better model), a corrupted feed (refused by the
    audit), a store outage (retried on the restarted store; the drifted data is ordinary to
    the model retrained on it)."""
    # The embedded store, of the test's own: the outage kills it.
    settings = [
        f"storage.data_dir={tmp_path / 's3'}",
        f"engine.workdir={tmp_path / 'runs'}",
        f"deploy.state_dir={tmp_path / 'serving'}",
    ]
    config = load_config(ROOT / "config" / "local.yaml", settings)
    console = Console(record=True, width=200)
    events = (
        Event(2, EventKind.COVARIATE, "monthly_charges=1.0"),
        Event(2, EventKind.CONCEPT, "0.8"),
        Event(3, EventKind.CORRUPT),
        Event(4, EventKind.OUTAGE),
    )
    days, summary = simulate(config, Scenario(days=4, events=events, rows=3000, rounds=10), console)

    assert [day.day for day in days] == [0, 1, 2, 3, 4]
    first, quiet, drifted, corrupt, outage = days
    assert first.reason.startswith("no model") and first.promoted
    assert quiet.retrain is False and not quiet.promoted and quiet.trained_on == 0
    assert drifted.reason.startswith("drift: monthly_charges PSI")
    assert "decay: AUC" in drifted.reason
    # The old model ranks the changed concept worse than chance; its successor's scores move
    # away from stable's, as evaluated, and the canary lets it through.
    assert drifted.served_auc is not None and drifted.served_auc < 0.5
    assert drifted.promoted and not drifted.rolled_back
    assert corrupt.trained_on == 2  # the model trained on the drifted day serves next
    assert corrupt.retrain and not corrupt.promoted and not corrupt.succeeded
    assert "audit" in corrupt.reason and "monthly_charges" in corrupt.reason
    assert outage.attempts == 2 and outage.succeeded and outage.trained_on == 2
    assert outage.retrain is False
    assert outage.served_auc is not None and outage.served_auc > 0.7
    assert all(day.consistent for day in days)
    assert [day.served_auc is None for day in days] == [True, False, False, False, False]
    assert [day.oracle_auc is None for day in days] == [True, False, False, False, False]
    assert [answer.day for answer in summary.answers] == [2, 2, 3, 4]
    assert [answer.stale_days for answer in summary.answers[:2]] == [1, 1]
    assert not summary.corrupt_promoted
    assert (summary.retrains, summary.promotions, summary.rollbacks) == (3, 2, 0)
    assert summary.retries == 1
    text = console.export_text()
    for header in ("served AUC", "oracle AUC", "days on a stale model", "days retried"):
        assert header in text


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
