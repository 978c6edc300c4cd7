"""The synthetic churn data: deterministic, shaped like the contract says, learnable but noisy."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from steps.core.errors import BadInput
from steps.data.synth import REGIONS, ChurnParams, generate
from tests.datasets import run_step


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(20_000, seed=11)


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    pd.testing.assert_frame_equal(generate(500, seed=3), generate(500, seed=3))
    assert not generate(500, seed=3).equals(generate(500, seed=4))


def test_columns_types_and_rates(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == [
        "customer_id",
        "region",
        "plan",
        "contract",
        "payment_method",
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "support_calls",
        "age",
        "usage_gb",
        "churned",
    ]
    assert frame["customer_id"].is_unique
    assert pd.api.types.is_integer_dtype(frame["tenure_months"])
    assert pd.api.types.is_integer_dtype(frame["support_calls"])
    assert {c: frame[c].nunique() for c in ["region", "plan", "contract", "payment_method"]} == {
        "region": 5,
        "plan": 3,
        "contract": 3,
        "payment_method": 4,
    }
    sizes = frame["region"].value_counts()
    assert sizes.max() > 2 * sizes.min(), "regions should be uneven slices"
    assert set(frame["churned"]) == {"yes", "no"}
    assert 0.17 < (frame["churned"] == "yes").mean() < 0.23
    assert 0.02 < frame["total_charges"].isna().mean() < 0.04
    assert 0.005 < frame["age"].isna().mean() < 0.015
    assert frame.drop(columns=["total_charges", "age"]).notna().all().all()


def test_region_changes_churn(frame: pd.DataFrame) -> None:
    rates = (frame["churned"] == "yes").groupby(frame["region"]).mean()
    assert rates["west"] - rates["central"] > 0.08


def test_a_boosted_tree_learns_it_but_not_perfectly(frame: pd.DataFrame) -> None:
    features = frame.drop(columns=["customer_id", "churned"])
    for name in ["region", "plan", "contract", "payment_method"]:
        features[name] = features[name].astype("category")
    label = (frame["churned"] == "yes").astype(int)
    model = xgb.XGBClassifier(n_estimators=100, max_depth=4, enable_categorical=True, nthread=2)
    model.fit(features[:15_000], label[:15_000])
    auc = roc_auc_score(label[15_000:], model.predict_proba(features[15_000:])[:, 1])
    assert 0.78 < auc < 0.92


def test_params_shift_the_population() -> None:
    """The hook for drift scenarios: a different ChurnParams, same generator."""
    only_west = ChurnParams(region_weights=(0, 0, 0, 1, 0))
    assert set(generate(300, seed=1, params=only_west)["region"]) == {"west"}
    more_churn = generate(5000, seed=1, params=ChurnParams(churn_rate=0.5))
    assert 0.45 < (more_churn["churned"] == "yes").mean() < 0.55
    with pytest.raises(BadInput, match=f"region_weights needs {len(REGIONS)} values"):
        ChurnParams(region_weights=(1, 2))


def test_cli_writes_the_same_rows_as_parquet_and_csv(tmp_path: Path) -> None:
    for name in ["d.parquet", "d.csv"]:
        result = run_step(
            ["synth", "--rows", "400", "--seed", "5", "--out", str(tmp_path / name)],
            dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
    from_parquet = pd.read_parquet(tmp_path / "d.parquet")
    from_csv = pd.read_csv(tmp_path / "d.csv")
    pd.testing.assert_frame_equal(from_parquet, generate(400, seed=5))
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    assert not np.array_equal(from_parquet["usage_gb"], generate(400, seed=6)["usage_gb"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "10", "--out", "{tmp}/d.json"], "extension must be .parquet or .csv"),
        (["--rows", "0", "--out", "{tmp}/d.parquet"], "--rows must be at least 1"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_step(["synth", *[a.format(tmp=tmp_path) for a in args]], dict(os.environ))
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []
