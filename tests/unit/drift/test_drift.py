"""The drift check: statistics, decisions on real drift scenarios, the step's CLI and outputs.

One stable model (real XGBoost -> ONNX, real reference profile, real registry entry on
SeaweedFS) serves the whole module; each scenario is a synthetic window from steps/data/synth.py.
"""

import numpy as np
import pytest
from scipy import stats

from steps.core.specs import DriftSpec
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

SPEC = DriftSpec()


def drifted(result: DriftResult) -> set[str]:
    return {feature.name for feature in result.features if feature.drifted}


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
