"""Drifted windows from the synthetic generator: each kind of drift changes what it claims
to change and nothing else, through the library, the step CLI and `mlpipe data synth`."""

import pandas as pd
import pytest

from steps.core.errors import BadInput
from steps.data.synth import CATEGORIES, NUMERIC, ChurnParams, generate

ROWS = 20_000


FEATURES = [*CATEGORIES, *NUMERIC]


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return generate(ROWS, seed=4)


def test_covariate_drift_moves_the_chosen_feature_by_standard_deviations(
    base: pd.DataFrame,
) -> None:
    drifted = generate(ROWS, seed=4, params=ChurnParams(covariate_drift=(("age", 1.5),)))
    shift = drifted["age"].mean() - base["age"].mean()
    assert shift == pytest.approx(1.5 * base["age"].std(), rel=0.05)
    # Nothing else moved: same draws, and only age is downstream of age.
    others = [c for c in base.columns if c not in ("age", "churned")]
    pd.testing.assert_frame_equal(drifted[others], base[others])


def test_covariate_drift_keeps_the_label_model(base: pd.DataFrame) -> None:
    """Younger customers churn more; older ones less: the rate follows x, P(y | x) stays."""
    older = generate(ROWS, seed=4, params=ChurnParams(covariate_drift=(("age", 1.5),)))
    rate = (older["churned"] == "yes").mean()
    assert rate < (base["churned"] == "yes").mean() - 0.02


def test_categorical_covariate_drift_tilts_the_mix(base: pd.DataFrame) -> None:
    drifted = generate(ROWS, seed=4, params=ChurnParams(covariate_drift=(("contract", 1.0),)))
    before = base["contract"].value_counts(normalize=True)
    after = drifted["contract"].value_counts(normalize=True)
    assert after["two-year"] > before["two-year"] + 0.2
    assert after["month-to-month"] < before["month-to-month"] - 0.2


def test_concept_drift_changes_labels_only(base: pd.DataFrame) -> None:
    drifted = generate(ROWS, seed=4, params=ChurnParams(concept_drift=0.8))
    pd.testing.assert_frame_equal(drifted[FEATURES], base[FEATURES])
    assert (drifted["churned"] != base["churned"]).mean() > 0.1
    assert abs((drifted["churned"] == "yes").mean() - 0.2) < 0.02  # the rate is held
    # The relation turned: long-tenure customers now churn more than new ones.
    long = drifted["tenure_months"] > 36
    churn = drifted["churned"] == "yes"
    assert churn[long].mean() > churn[~long].mean()


def test_a_new_category_replaces_a_share_of_rows_and_nothing_else(base: pd.DataFrame) -> None:
    drifted = generate(ROWS, seed=4, params=ChurnParams(new_categories=(("plan", "ultra", 0.1),)))
    new = drifted["plan"] == "ultra"
    assert 0.09 < new.mean() < 0.11
    pd.testing.assert_frame_equal(drifted[~new], base[~new])
    # Labels included: the hidden plan still decides churn as before.
    pd.testing.assert_frame_equal(drifted.drop(columns="plan"), base.drop(columns="plan"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"covariate_drift": (("height", 1.0),)}, "unknown feature 'height'"),
        ({"covariate_drift": (("age", float("nan")),)}, "must be finite"),
        ({"new_categories": (("age", "x", 0.1),)}, "categorical features are"),
        ({"new_categories": (("plan", "basic", 0.1),)}, "'basic' is not a new category"),
        ({"new_categories": (("plan", "ultra", 1.5),)}, "must be in (0, 1]"),
        ({"concept_drift": 1.5}, "concept_drift must be in [0, 1]"),
    ],
)
def test_impossible_drift_is_bad_input(params: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput) as raised:
        ChurnParams(**params)  # type: ignore[arg-type]
    assert message in str(raised.value)
