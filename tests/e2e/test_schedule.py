"""`mlpipe schedule`: run-once and simulate through the local engine on real S3, and apply
against an HTTP server that answers like Argo's CronWorkflow API."""

from pathlib import Path

import pytest
from rich.console import Console

from steps.core.store import ArtifactStore
from steps.data import synth
from tests.e2e import test_end_to_end as end_to_end
from tests.support.commands import mlpipe
from tests.support.paths import ROOT
from tests.support.stable_model import register_stable_model
from workflows.config import load_config
from workflows.simulate import Scenario, simulate

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


def test_run_once_without_drift_checks_and_ends_without_training(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    register_stable_model(store, synth.generate(6000, seed=1))
    data = tmp_path / "recent.parquet"
    synth.generate(3000, seed=21).to_parquet(data)
    result = mlpipe(
        "schedule", "run-once", "--data", str(data), *FAST, *external(s3_env, tmp_path), env=s3_env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no retraining: no drift, decay or age trigger" in result.stdout
    assert "when 'false == true' evaluated false" in result.stdout
    keys = store.list("")
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


def test_simulate_ten_days_retrains_when_the_drift_starts_and_not_before(
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    # One training worker: the fewest processes a retraining can take.
    settings = [*external(s3_env, tmp_path)[1::2], "train.workers=1"]
    config = load_config(ROOT / "config" / "local.yaml", settings)
    console = Console(record=True, width=200)
    days = simulate(config, Scenario(days=10, drift_day=6, rows=3000, rounds=10), console)

    assert [day.day for day in days] == list(range(11))
    assert all(day.succeeded for day in days), [day.reason for day in days]
    first = days[0]
    assert first.retrain and first.reason.startswith("no model") and first.promoted
    retrained = [day.day for day in days[1:] if day.retrain]
    assert retrained and retrained[0] in (6, 7), [(d.day, d.reason) for d in days]
    assert all(day.retrain or not day.promoted for day in days)
    drift_day = days[retrained[0]]
    assert drift_day.reason.startswith("drift: monthly_charges PSI") and drift_day.promoted
    # Retrained on the drifted data, the new model finds the next drifted days ordinary.
    assert not any(day.retrain for day in days[retrained[0] + 1 :])
    text = console.export_text()
    for header in ("day", "decision", "reason", "promoted"):
        assert header in text
