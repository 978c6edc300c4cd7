"""The drift check: statistics, decisions on real drift scenarios, the step's CLI and outputs.

One stable model (real XGBoost -> ONNX, real reference profile, real registry entry on
SeaweedFS) serves the whole module; each scenario is a synthetic window from steps/data/synth.py.
"""

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from steps.core.errors import BadInput
from steps.core.names import Env
from steps.core.specs import DriftSpec
from steps.core.store import DEFAULT_REGION, ArtifactStore
from steps.data import synth
from steps.data.features import FeatureSchema
from steps.data.profile import assemble, count, layout_for, quantile_edges
from steps.drift.result import DriftResult
from steps.drift.stats import (
    auc_standard_error,
    bin_counts,
    binned_ks,
    chi2_homogeneity,
    feature_drift,
    ks_p_value,
    psi,
)
from steps.drift.step import check_drift, resolve_window
from tests.datasets import read_parameters, run_step
from tests.stable_model import register_stable_model
from workflows.s3server import EmbeddedS3

MODEL = "churn"
SPEC = DriftSpec()
DATA_SPEC = synth.data_spec()
NOW = datetime(2030, 1, 1, tzinfo=UTC)
WINDOW_ROWS = 3000


@pytest.fixture(scope="module")
def registry(s3_server: EmbeddedS3) -> Iterator[ArtifactStore]:
    """A bucket whose stable model was trained on 6000 undrifted rows, deployed a day ago."""
    store = ArtifactStore(
        s3_server.endpoint,
        f"drift-{uuid.uuid4().hex[:12]}",
        s3_server.access_key,
        s3_server.secret_key,
    )
    store.ensure_bucket()
    register_stable_model(store, synth.generate(6000, seed=1), MODEL, NOW - timedelta(days=1))
    yield store


def window(tmp_path: Path, params: synth.ChurnParams | None = None, seed: int = 101) -> Path:
    path = tmp_path / f"window-{seed}.parquet"
    synth.generate(WINDOW_ROWS, seed=seed, params=params).to_parquet(path)
    return path


def check(store: ArtifactStore, path: Path, now: datetime = NOW) -> DriftResult:
    return check_drift(store, str(path), DATA_SPEC, MODEL, SPEC, now)


def drifted(result: DriftResult) -> set[str]:
    return {feature.name for feature in result.features if feature.drifted}


# --- statistics -----------------------------------------------------------------------------


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    reference = np.array([100, 200, 300, 400])
    assert psi(reference, reference * 3) == pytest.approx(0.0)
    small = psi(reference, np.array([110, 200, 290, 400]))
    large = psi(reference, np.array([400, 300, 200, 100]))
    assert 0 < small < 0.01 < SPEC.psi < large
    # An empty reference bucket is floored, not infinite.
    assert np.isfinite(psi(np.array([10, 0]), np.array([5, 5])))


def test_binned_ks_and_its_p_value_match_scipy_on_the_same_grid() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 4000), rng.normal(0.2, 1, 3000)
    edges = list(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
    counts_a, _ = bin_counts(a, edges)
    counts_b, _ = bin_counts(b, edges)
    distance = binned_ks(counts_a, counts_b)
    # The binned distance is the exact KS distance of the data rounded to the grid.
    grid_a, grid_b = np.searchsorted(edges, a, "right"), np.searchsorted(edges, b, "right")
    exact = stats.ks_2samp(grid_a, grid_b, method="asymp")
    assert distance == pytest.approx(exact.statistic)
    assert ks_p_value(distance, len(a), len(b)) == pytest.approx(exact.pvalue, rel=1e-6)
    assert distance <= stats.ks_2samp(a, b).statistic + 1e-12


def test_bin_counts_follow_the_profiles_binning_rule_with_missing_apart() -> None:
    counts, missing = bin_counts(np.array([0.5, 1.0, 1.5, 2.0, np.nan, 9.0]), [1.0, 2.0])
    assert counts.tolist() == [1, 2, 2]  # v < 1 | 1 <= v < 2 | v >= 2
    assert missing == 1


def test_chi2_gives_cramers_v_and_ignores_empty_buckets() -> None:
    chi2, p_value, v = chi2_homogeneity(np.array([500, 500, 0]), np.array([250, 750, 0]))
    expected = stats.chi2_contingency(np.array([[500, 500], [250, 750]]), correction=False)
    assert chi2 == pytest.approx(expected.statistic) and p_value == pytest.approx(expected.pvalue)
    assert v == pytest.approx(np.sqrt(expected.statistic / 2000))
    assert chi2_homogeneity(np.array([5, 5]), np.array([0, 0]))[1] == 1.0


def test_auc_standard_error_shrinks_with_more_rows() -> None:
    assert auc_standard_error(0.8, 50, 200) > auc_standard_error(0.8, 500, 2000) > 0


def test_a_window_equal_to_the_training_data_has_no_drift() -> None:
    """The window is binned exactly as steps/data/profile.py counted the training data."""
    frame = synth.generate(2000, seed=5).assign(churned=lambda f: (f.churned == "yes") * 1)
    features = [
        {"name": c, "kind": "numeric"} if c in synth.NUMERIC else
        {"name": c, "kind": "categorical", "categories": sorted(frame[c].unique())}
        for c in [*synth.CATEGORIES, *synth.NUMERIC]
    ]  # fmt: skip
    schema = FeatureSchema.model_validate({"features": features})
    layout = layout_for(schema, "churned", quantile_edges(frame, schema), "region")
    profile = assemble(count(frame, layout), layout)
    results = feature_drift(frame, schema, profile.overall, SPEC)
    assert {r.name for r in results} == set(schema.names)
    for result in results:
        assert result.psi == pytest.approx(0.0, abs=1e-12), result.name
        assert result.histogram.reference == pytest.approx(result.histogram.current)
        assert not result.drifted


# --- decisions -------------------------------------------------------------------------------


def test_no_drift_no_retrain(registry: ArtifactStore, tmp_path: Path) -> None:
    result = check(registry, window(tmp_path))
    assert not result.decision.retrain, result.decision.reason
    assert result.decision.reason.startswith("no drift, decay or age trigger")
    assert result.decision.reason.endswith("; age 1d")
    assert not drifted(result)
    assert result.prediction is not None and not result.prediction.drifted
    assert result.performance is not None and result.performance.judged
    assert not result.performance.decayed


def test_covariate_drift_on_one_feature_retrains_naming_it(
    registry: ArtifactStore, tmp_path: Path
) -> None:
    result = check(registry, window(tmp_path, synth.ChurnParams(covariate_drift=(("age", 1.0),))))
    assert result.decision.retrain
    assert drifted(result) == {"age"}
    assert result.features[0].name == "age"
    assert result.decision.reason.startswith("drift: age PSI ")
    # P(y | x) did not change: no decay, even though the label rate did.
    assert result.performance is not None and not result.performance.decayed


def test_concept_drift_with_labels_is_decay_with_unchanged_features(
    registry: ArtifactStore, tmp_path: Path
) -> None:
    result = check(registry, window(tmp_path, synth.ChurnParams(concept_drift=0.8)))
    assert not drifted(result)
    assert result.prediction is not None and not result.prediction.drifted
    performance = result.performance
    assert performance is not None and performance.decayed
    assert performance.window_auc is not None
    assert performance.window_auc < performance.baseline_auc - SPEC.auc_drop
    assert result.decision.retrain
    assert result.decision.reason.startswith("decay: AUC ")


def test_concept_drift_without_labels_cannot_be_seen(
    registry: ArtifactStore, tmp_path: Path
) -> None:
    path = window(tmp_path, synth.ChurnParams(concept_drift=0.8))
    pd.read_parquet(path).drop(columns=["churned"]).to_parquet(path)
    result = check(registry, path)
    assert result.performance is not None and not result.performance.judged
    assert result.performance.note == "the window has no labels"
    assert not result.decision.retrain


def test_an_unseen_category_is_flagged(registry: ArtifactStore, tmp_path: Path) -> None:
    result = check(
        registry, window(tmp_path, synth.ChurnParams(new_categories=(("plan", "enterprise", 0.1),)))
    )
    plan = next(feature for feature in result.features if feature.name == "plan")
    assert plan.unseen_values == ["enterprise"]
    assert 0.08 < plan.unseen_share < 0.12
    assert any(reason.startswith("unseen 'enterprise'") for reason in plan.reasons)
    assert result.decision.retrain and "unseen 'enterprise'" in result.decision.reason
    assert plan.histogram.buckets[-2:] == ["unseen", "missing"]


def test_an_old_model_is_retrained_without_drift(registry: ArtifactStore, tmp_path: Path) -> None:
    result = check(registry, window(tmp_path), now=NOW + timedelta(days=40))
    assert result.decision.retrain
    assert result.decision.triggers == ["age 41d > 30d"]
    assert result.decision.reason == "age 41d > 30d"


def test_no_stable_model_means_retrain_no_model(store: ArtifactStore, tmp_path: Path) -> None:
    result = check(store, window(tmp_path))
    assert result.decision.retrain
    assert result.decision.reason.startswith("no model: ")
    assert "registry/churn/stable.json" in result.decision.reason
    assert result.model is None and not result.features


def test_a_model_without_reference_profile_means_no_model(
    store: ArtifactStore, tmp_path: Path
) -> None:
    register_stable_model(store, synth.generate(1500, seed=2), MODEL, with_profile=False)
    result = check(store, window(tmp_path))
    assert result.decision.retrain
    assert result.decision.reason.startswith("no model: ")
    assert "no reference profile" in result.decision.reason


def test_a_prefix_window_is_its_last_object(store: ArtifactStore, tmp_path: Path) -> None:
    path = window(tmp_path)
    for day in ("dt=2030-01-01", "dt=2030-01-03", "dt=2030-01-02"):
        store.upload_file(path, f"incoming/churn/{day}/part.parquet")
    store.put_bytes("incoming/churn/_SUCCESS", b"")
    latest = resolve_window(store, store.uri("incoming/churn/"))
    assert latest == store.uri("incoming/churn/dt=2030-01-03/part.parquet")
    with pytest.raises(BadInput, match=r"holds no \.parquet or \.csv object"):
        resolve_window(store, store.uri("nothing/here/"))


# --- the step's CLI --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_env(registry: ArtifactStore, s3_server: EmbeddedS3) -> dict[str, str]:
    return {
        **os.environ,
        Env.S3_ENDPOINT.value: s3_server.endpoint,
        Env.S3_BUCKET.value: registry.bucket,
        Env.S3_REGION.value: DEFAULT_REGION,
        Env.ACCESS_KEY.value: s3_server.access_key,
        Env.SECRET_KEY.value: s3_server.secret_key,
    }


def drift_step(path: Path | str, out: Path, env: dict[str, str]) -> tuple[int, str]:
    result = run_step(
        [
            "drift",
            "--window-uri",
            str(path),
            "--data-spec",
            DATA_SPEC.model_dump_json(),
            "--drift-spec",
            SPEC.model_dump_json(),
            "--model-name",
            MODEL,
            "--out",
            str(out),
        ],
        env,
    )
    return result.returncode, result.stdout + result.stderr


def test_the_step_writes_decision_result_and_report(
    registry_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, output = drift_step(
        window(tmp_path, synth.ChurnParams(covariate_drift=(("monthly_charges", 1.0),))),
        out,
        registry_env,
    )
    assert code == 0, output
    parameters = read_parameters(out)
    assert parameters["retrain"] == "true"
    assert parameters["reason"].startswith("drift: monthly_charges PSI")
    assert float(parameters["drift_score"]) > SPEC.psi
    result = DriftResult.model_validate_json((out / "drift-result.json").read_text())
    assert result.decision.reason == parameters["reason"]
    assert [f.psi for f in result.features if f.drifted] == sorted(
        (f.psi for f in result.features if f.drifted), reverse=True
    )
    report = (out / "drift-report.html").read_text()
    assert "Drift check: retrain" in report
    # A histogram for each of the most drifted features, the worst first.
    assert report.count("<svg") == SPEC.report_features + 1  # + the prediction histogram
    assert report.index("<h3>monthly_charges") < report.index("<h3>total_charges")
    assert f"retrain=true: {parameters['reason']}" in output


BAD_WINDOWS = {
    "empty": (lambda f: f.iloc[:0], "no rows"),
    "short": (lambda f: f.iloc[:50], "has 50 rows; the drift check needs at least 100"),
    "numeric": (
        lambda f: f.drop(columns=["age", "tenure_months"]),
        "lacks column(s) tenure_months, age",
    ),
    "category": (lambda f: f.drop(columns=["plan"]), "categorical column(s) ['plan'] not found"),
    "new column": (lambda f: f.assign(referrer="web"), "new column(s) referrer"),
}


@pytest.mark.parametrize("case", list(BAD_WINDOWS))
def test_a_window_it_cannot_judge_is_bad_input(
    registry: ArtifactStore, tmp_path: Path, case: str
) -> None:
    broken, message = BAD_WINDOWS[case]
    path = tmp_path / "window.parquet"
    broken(synth.generate(500, seed=3)).to_parquet(path)
    with pytest.raises(BadInput) as raised:
        check(registry, path)
    assert message in str(raised.value)


def test_the_step_exits_2_and_writes_nothing_for_a_bad_window(
    registry_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "new.parquet"
    synth.generate(500, seed=3).assign(referrer="web").to_parquet(path)
    out = tmp_path / "out"
    code, output = drift_step(path, out, registry_env)
    assert code == 2, output
    assert "new column(s) referrer" in output and "Traceback" not in output
    assert not out.exists(), "outputs written for a refused window"


def test_the_step_names_a_missing_window_file(registry_env: dict[str, str], tmp_path: Path) -> None:
    code, output = drift_step(tmp_path / "nope.parquet", tmp_path / "out", registry_env)
    assert code == 2 and "data file not found" in output and "nope.parquet" in output


def test_a_bad_drift_spec_is_bad_input(registry_env: dict[str, str], tmp_path: Path) -> None:
    result = run_step(
        ["drift", "--window-uri", "x.parquet", "--data-spec", DATA_SPEC.model_dump_json(),
         "--drift-spec", json.dumps({"psi": -1}), "--model-name", MODEL, "--out",
         str(tmp_path / "out")],
        registry_env,
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid DriftSpec: psi" in result.stderr
