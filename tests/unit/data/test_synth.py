"""The synthetic churn data: deterministic, shaped like the contract says, learnable but noisy."""

import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from steps.core.errors import BadInput
from steps.data.synth import REGIONS, ChurnParams, generate


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
