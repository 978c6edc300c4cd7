"""What `mlpipe init` and `mlpipe run --label` infer from a file nobody described: each
column's role and the reason for it, the positive class, and bad input refused."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.core.errors import BadInput
from steps.data.infer import infer
from tests.support.own_data import own_data
from tests.support.paths import ROOT


def test_inference_says_what_each_column_is_and_why(tmp_path: Path) -> None:
    path = tmp_path / "Clients 2024 (export).csv"
    own_data(3000).to_csv(path, index=False)
    inferred = infer(path, "churned?")
    data = inferred.data
    assert inferred.model_name == "clients-2024-export"
    assert data.positive_class == "yes" and data.row_key == "client id"
    assert data.categorical == ["région", "plan"]
    assert data.exclude == ["note"] and data.missing_values == ["", "?"]
    reasons = {c.column: c.reason for c in inferred.choices}
    assert reasons["client id"].startswith("unique in each of the 3000 rows")
    assert reasons["plan"] == "integers with 3 values: codes"
    assert "free text or an identifier" in reasons["note"]
    assert "'?' in région (" in next(c.reason for c in inferred.choices if c.column is None)


@pytest.mark.parametrize(
    ("labels", "positive"),
    [(["<=50K", ">50K"], ">50K"), ([0, 1], 1), (["False", "True"], "True"), (["N", "Y"], "Y")],
)
def test_an_obvious_positive_class_is_taken(
    tmp_path: Path, labels: list[object], positive: object
) -> None:
    frame = own_data(400).drop(columns=["churned?"])
    frame["target"] = [labels[i % 3 == 0] for i in range(len(frame))]
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    assert infer(tmp_path / "d.parquet", "target").data.positive_class == positive


def test_fifty_thousand_distinct_strings_are_not_a_category(tmp_path: Path) -> None:
    rows = 60_000
    frame = pd.DataFrame(
        {
            "code": [f"k{i % 50_000}" for i in range(rows)],
            "x": np.arange(rows) % 97,
            "y": np.arange(rows) % 2,
        }
    )
    frame.to_parquet(tmp_path / "wide.parquet", index=False)
    inferred = infer(tmp_path / "wide.parquet", "y")
    assert inferred.data.exclude == ["code"]
    assert inferred.reason("code").startswith("50000 distinct strings in 60000 rows")


def test_an_unreadable_inference_is_bad_input() -> None:
    with pytest.raises(BadInput, match="data file not found"):
        infer(ROOT / "absent.csv", "y")
