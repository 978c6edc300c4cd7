"""The audit's built-in checks (data tests) on frames in memory: duplicates, leakage, label
conflicts, balance and nulls, each failing with a message naming the check, the column,
what was seen and the bound."""

from pathlib import Path

import pandas as pd
import pytest

from steps.audit.checks import Severity, builtin_checks
from steps.data.dataset import read_table
from steps.data.synth import generate
from tests.support.audit import AUDIT, DATA, as_read, failures


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate(3000, seed=21)


def test_clean_data_passes_every_builtin_check(clean: pd.DataFrame, tmp_path: Path) -> None:
    assert failures(as_read(clean, tmp_path)) == {}


def test_thirty_percent_duplicated_rows_fail(clean: pd.DataFrame, tmp_path: Path) -> None:
    copies = clean.sample(frac=0.3, random_state=2).assign(
        customer_id=lambda f: f["customer_id"] + "-copy"  # fresh keys: only the content repeats
    )
    found = failures(as_read(pd.concat([clean, copies]), tmp_path))
    [message] = found["duplicated rows"]
    assert "900 of 3900 rows (23.08%) repeat an earlier row" in message
    assert "expected <= 5.00%" in message


def test_duplicates_with_missing_values_are_counted_as_pandas_counts_them(
    clean: pd.DataFrame, tmp_path: Path
) -> None:
    holed = clean.copy()
    holed.loc[holed.index[:200], "age"] = None
    holed.loc[holed.index[100:300], "region"] = None
    copies = holed.iloc[:600].assign(customer_id=lambda f: f["customer_id"] + "-copy")
    frame = pd.concat([holed, copies], ignore_index=True)
    expected = int(frame.drop(columns="customer_id").duplicated().sum())
    [message] = failures(as_read(frame, tmp_path))["duplicated rows"]
    assert f"{expected} of {len(frame)} rows" in message


@pytest.mark.parametrize("as_number", [True, False])
def test_a_feature_equal_to_the_label_is_leakage(
    clean: pd.DataFrame, tmp_path: Path, as_number: bool
) -> None:
    leak = (clean["churned"] == "yes").astype(int) if as_number else clean["churned"]
    found = failures(as_read(clean.assign(churn_flag=leak), tmp_path))
    [message] = found["label leakage"]
    assert "on column 'churn_flag': observed AUC 1.0000: reproduces the label" in message


def test_a_near_perfect_predictor_is_leakage_but_an_id_like_column_is_not(
    clean: pd.DataFrame, tmp_path: Path
) -> None:
    noisy = (clean["churned"] == "yes").astype(float)
    noisy[::100] = 1 - noisy[::100]  # 1% flipped: still almost the label
    frame = clean.assign(refund_issued=noisy, ticket=[f"t{i}" for i in range(len(clean))])
    found = failures(as_read(frame, tmp_path))
    [message] = found["label leakage"]
    assert "'refund_issued'" in message and "predicts the label almost alone" in message


def test_identical_features_with_both_labels_are_conflicts(
    clean: pd.DataFrame, tmp_path: Path
) -> None:
    flipped = clean.sample(frac=0.05, random_state=3)
    flipped = flipped.assign(
        customer_id=flipped["customer_id"] + "-x",
        churned=flipped["churned"].map({"yes": "no", "no": "yes"}),
    )
    found = failures(as_read(pd.concat([clean, flipped]), tmp_path))
    [message] = found["conflicting labels (identical features, different label)"]
    assert "300 rows in 150 groups" in message


def test_class_balance_and_null_share_bounds(clean: pd.DataFrame, tmp_path: Path) -> None:
    rare = clean.copy()
    rare.loc[rare.index[30:], "churned"] = "no"
    rare.loc[rare.index[:30], "churned"] = "yes"
    rare.loc[rare.index[:1200], "age"] = None
    found = failures(as_read(rare, tmp_path))
    assert found["class balance within bounds"] == [
        "class balance within bounds: observed 1.00% positive; expected between 2.00% and 98.00%"
    ]
    [null] = found["null share"]
    assert null.startswith("null share on column 'age': observed 40.")
    assert null.endswith("% null; expected <= 25.00% per column")


def test_a_near_constant_column_is_a_warning(clean: pd.DataFrame, tmp_path: Path) -> None:
    checks = builtin_checks(as_read(clean.assign(plan="basic"), tmp_path), DATA, AUDIT, None)
    [check] = [c for c in checks if c.name == "near-constant column"]
    assert (check.column, check.severity) == ("plan", Severity.WARNING)


def test_identifiers_and_undeclared_text_are_named(clean: pd.DataFrame, tmp_path: Path) -> None:
    """An ID declared as a feature is critical; integers unique per row and text with 50k
    distinct values are warnings naming the column; undeclared text columns are named all at
    once (not one per failed run at provenance)."""
    rows = 50_001
    frame = pd.concat([clean] * (rows // len(clean) + 1), ignore_index=True).iloc[:rows]
    frame = frame.assign(
        customer_id=[f"c{i}" for i in range(rows)],
        account=[f"a{i}" for i in range(rows)],
        serial=range(rows),
        comment=[f"free text {i}" for i in range(rows)],
        city=["x"] * rows,
        street=["y"] * rows,
    )
    frame.loc[0, "comment"] = None  # not unique-and-complete: wide text, not an identifier
    spec = DATA.model_copy(update={"categorical": [*DATA.categorical, "account", "comment"]})
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    read = read_table(str(tmp_path / "d.parquet"), spec, None)
    checks = {(c.name, c.column): c for c in builtin_checks(read, spec, AUDIT, None)
              if not c.passed}  # fmt: skip
    assert checks[("identifier declared as a feature", "account")].severity is Severity.CRITICAL
    assert checks[("unique per row", "serial")].severity is Severity.WARNING
    wide = checks[("text with very many values", "comment")]
    assert wide.severity is Severity.WARNING and wide.observed == "50000 distinct strings"
    assert {c for n, c in checks if n == "text column not declared"} == {"city", "street"}
