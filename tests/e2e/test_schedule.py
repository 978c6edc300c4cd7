"""`mlpipe schedule`: run-once and simulate through the local engine on real S3, and apply
against an HTTP server that answers like Argo's CronWorkflow API."""

from pathlib import Path

import pytest
from rich.console import Console

from steps.core.store import ArtifactStore
from steps.data import synth
from tests.support.commands import mlpipe
from tests.support.paths import ROOT
from tests.support.s3 import external
from tests.support.stable_model import register_stable_model
from workflows.config import load_config
from workflows.simulate import Event, EventKind, Scenario, simulate

# A deploy leaves its stable model server running detached under the test's tmp dir.
pytestmark = pytest.mark.usefixtures("serving_dir")

FAST = ["--set", "train.rounds=10", "--set", "audit.min_rows=100"]


def settings(s3_env: dict[str, str], tmp_path: Path) -> list[str]:
    """Settings for a run against the test's bucket on the session's SeaweedFS."""
    return [
        *external(s3_env),
        "--set",
        f"engine.workdir={tmp_path / 'runs'}",
        "--set",
        f"deploy.state_dir={tmp_path / 'serving'}",
    ]


def test_run_once_without_drift_checks_and_ends_without_training(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    register_stable_model(store, synth.generate(6000, seed=1))
    registered = set(store.list(""))  # the stable model, with its provenance statement
    data = tmp_path / "recent.parquet"
    synth.generate(3000, seed=21).to_parquet(data)
    result = mlpipe(
        "schedule", "run-once", "--data", str(data), *FAST, *settings(s3_env, tmp_path), env=s3_env
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
        "schedule", "run-once", "--data", str(data), *FAST, *settings(s3_env, tmp_path), env=s3_env
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
