"""Drifted windows from the synthetic generator: each kind of drift changes what it claims
to change and nothing else, through the library, the step CLI and `mlpipe data synth`."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def test_mlpipe_data_synth_writes_a_drifted_window(tmp_path: Path) -> None:
    out = tmp_path / "window.parquet"
    result = run(
        "-m", "workflows.cli", "data", "synth", "--rows", "3000", "--seed", "2", "--out", str(out),
        "--covariate-drift", "age=1", "--covariate-drift", "region=2",
        "--new-category", "plan=ultra:0.2", "--concept-drift", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = generate(
        3000,
        seed=2,
        params=ChurnParams(
            covariate_drift=(("age", 1.0), ("region", 2.0)),
            new_categories=(("plan", "ultra", 0.2),),
            concept_drift=0.5,
        ),
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert np.isclose((expected["plan"] == "ultra").mean(), 0.2, atol=0.03)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--covariate-drift", "age"], "expected FEATURE=STRENGTH"),
        (["--covariate-drift", "age=lots"], "expected FEATURE=STRENGTH"),
        (["--new-category", "plan=ultra"], "expected FEATURE=VALUE:SHARE"),
        (["--new-category", "height=x:0.1"], "categorical features are"),
    ],
)
def test_the_step_refuses_malformed_drift_options(
    tmp_path: Path, option: list[str], message: str
) -> None:
    out = tmp_path / "w.parquet"
    result = run("-m", "steps", "synth", "--rows", "10", "--out", str(out), *option)
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists()
