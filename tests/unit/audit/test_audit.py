"""The audit gate, and the data tests: the sample data must pass the default suite, broken
data must fail it with a message naming the check, the column and the values seen."""

import re
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
import pytest

from steps.audit.checks import Source
from steps.audit.step import _for_gx, audit_frame, build_suite, render_report
from steps.core import html_report
from steps.core.errors import BadInput
from steps.core.specs import AuditSpec
from steps.data.dataset import read_table
from steps.data.synth import generate
from tests.support.audit import AUDIT, DATA, SUITE


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The synthetic sample as the audit sees it (read back through the DataSpec)."""
    path = tmp_path_factory.mktemp("sample") / "sample.parquet"
    generate(2000, seed=7).to_parquet(path, index=False)
    return read_table(str(path), DATA, None)


def test_default_suite_is_substantial_and_tagged() -> None:
    expectations = SUITE["expectations"]
    assert len(expectations) >= 12
    assert {e["meta"]["severity"] for e in expectations} == {"critical", "warning"}


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_data_passes_the_default_suite(seed: int, tmp_path: Path) -> None:
    """Data test: whatever the seed, the sample data meets every expectation, warnings too."""
    generate(1500, seed=seed).to_csv(tmp_path / "d.csv", index=False)
    result = audit_frame(read_table(str(tmp_path / "d.csv"), DATA, None), DATA, AUDIT)
    failed = [c.describe() for c in result.checks if not c.passed]
    assert failed == []
    builtin = {c.name for c in result.checks if c.source is Source.BUILTIN}
    assert builtin == {
        "row count within bounds", "label column present", "label is binary with both classes",
        "class balance within bounds", "null share per column", "top value share per feature",
        "duplicated rows", "conflicting labels (identical features, different label)",
        "label leakage (single-feature AUC)",
    }  # fmt: skip
    assert len(result.checks) == len(SUITE["expectations"]) + len(builtin)


@pytest.mark.parametrize(
    ("column", "value", "check", "observed"),
    [
        ("region", "mars", "expect_column_values_to_be_in_set", "e.g. [mars]"),
        ("tenure_months", -5, "expect_column_values_to_be_between", "e.g. [-5]"),
        ("customer_id", "C000000001", "expect_column_values_to_be_unique", "unexpected"),
        ("monthly_charges", None, "expect_column_values_to_not_be_null", "12 unexpected"),
    ],
)
def test_a_broken_column_fails_the_gate_naming_the_check(
    sample: pd.DataFrame, column: str, value: object, check: str, observed: str
) -> None:
    broken = sample.copy()
    broken.loc[:11, column] = value
    result = audit_frame(broken, DATA, AUDIT)
    assert not result.passed
    [failure] = result.critical_failures
    assert (failure.name, failure.column) == (check, column)
    assert observed in failure.observed


def test_a_failed_warning_is_reported_but_passes(sample: pd.DataFrame) -> None:
    broken = sample.copy()
    broken.loc[:4, "age"] = 140.0
    result = audit_frame(broken, DATA, AUDIT)
    assert result.passed
    [warning] = result.warnings
    assert (warning.name, warning.column) == ("expect_column_values_to_be_between", "age")
    assert "max_value=100" in warning.bound


def test_builtin_checks_catch_label_and_row_count(sample: pd.DataFrame) -> None:
    one_class = sample.assign(churned="no")
    failures = {c.name: c for c in audit_frame(one_class, DATA, AUDIT).critical_failures}
    assert "one class only" in failures["label is binary with both classes"].observed

    no_label = sample.drop(columns=["churned"])
    failures = {c.name: c for c in audit_frame(no_label, DATA, AUDIT).critical_failures}
    assert failures["label column present"].observed == "absent"

    bounded = AUDIT.model_copy(update={"min_rows": 10, "max_rows": 1000})
    failures = {c.name: c for c in audit_frame(sample, DATA, bounded).critical_failures}
    assert failures["row count within bounds"].observed == "2000 rows"
    assert failures["row count within bounds"].bound == ">= 10 and <= 1000"


def test_severity_comes_from_meta_and_reaches_the_gx_result(sample: pd.DataFrame) -> None:
    suite = {
        "name": "two",
        "expectations": [
            {"type": "expect_column_to_exist", "kwargs": {"column": "nope"}},
            {
                "type": "expect_column_to_exist",
                "kwargs": {"column": "gone"},
                "meta": {"severity": "warning"},
            },
        ],
    }
    result = audit_frame(sample, DATA, AuditSpec(suite=suite))
    assert [c.column for c in result.critical_failures] == ["nope"]
    assert [c.column for c in result.warnings] == ["gone"]
    severities = [r["expectation_config"]["severity"] for r in result.gx_result["results"]]
    assert severities == ["critical", "warning"]


def test_per_column_validation_gives_what_one_gx_validation_gives(sample: pd.DataFrame) -> None:
    """The audit runs GX one column at a time (to keep GX's copies one column wide); the
    merged result must be the one a single validation of the whole frame gives."""
    broken = sample.copy()
    broken.loc[broken.index[:30], "total_charges"] = -5.0  # a column with missing values
    broken.loc[broken.index[:4], "region"] = "atlantis"
    extra = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "absent"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "support_calls", "max_value": 3, "row_condition": "age > 60",
                    "condition_parser": "pandas"}},
    ]  # fmt: skip
    suite = build_suite({**SUITE, "expectations": [*SUITE["expectations"], *extra]})
    ours = audit_frame(broken, DATA, AUDIT.model_copy(update={"suite": suite_json(suite)}))

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("data")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": _for_gx(broken, suite)})
    )
    whole = batch.validate(suite).to_json_dict()

    def essence(result: dict[str, Any]) -> list[tuple[str, Any, bool, Any, Any]]:
        return [
            (r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column"),
             r["success"], (r.get("result") or {}).get("unexpected_count"),
             (r.get("result") or {}).get("observed_value"))
            for r in result["results"]
        ]  # fmt: skip

    # GX orders a whole validation's results its own way; ours follow the suite.
    assert sorted(essence(ours.gx_result), key=repr) == sorted(essence(whole), key=repr)
    assert [r["expectation_config"]["type"] for r in ours.gx_result["results"]] == [
        e["type"] for e in [*SUITE["expectations"], *extra]
    ]
    assert essence(ours.gx_result)[-2][2] is False, "a missing column is GX's failure, kept"
    conditional = ours.gx_result["results"][-1]
    assert not conditional["exception_info"].get("raised_exception"), conditional
    assert 0 < conditional["result"]["element_count"] < len(broken)
    assert ours.gx_result["statistics"] == {**whole["statistics"]}
    assert ours.gx_result["success"] is whole["success"] is False


def suite_json(suite: gx.ExpectationSuite) -> dict[str, Any]:
    return {
        "name": suite.name,
        "expectations": [
            {"type": e.expectation_type, "kwargs": e.configuration.kwargs, "meta": e.meta}
            for e in suite.expectations
        ],
    }


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ({"type": "expect_colum_to_exist", "kwargs": {"column": "x"}}, "expect_colum_to_exist"),
        ({"type": "expect_column_to_exist", "kwargs": {}}, "column"),
        (
            {
                "type": "expect_column_to_exist",
                "kwargs": {"column": "x"},
                "meta": {"severity": "hi"},
            },
            "meta.severity must be critical or warning",
        ),
    ],
)
def test_a_bad_suite_is_bad_input_not_a_silent_skip(
    expectation: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadInput, match=re.escape(message)):
        build_suite({"name": "bad", "expectations": [expectation]})


def test_report_is_static_and_escapes_data(sample: pd.DataFrame) -> None:
    broken = sample.copy()
    broken.loc[:2, "region"] = "<script>alert(1)</script>"
    page = render_report(audit_frame(broken, DATA, AUDIT), "s3://b/<k>.csv")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "s3://b/&lt;k&gt;.csv" in page
    assert not re.search(r"(src|href)=|https?://|@import", page)
    assert '<tr class="fail"><td>FAIL</td><td>critical</td>' in page
    assert "<svg" in page


def test_report_helpers_escape_every_value() -> None:
    chart = html_report.bar_chart([html_report.Bar('<b a="1">', 2.0, html_report.FAIL)])
    assert "<b " not in chart
    assert "&lt;b a=&quot;1&quot;&gt;" in chart
    table = html_report.table(["<h>"], [["&", 0.123456789]], row_classes=["pass"])
    assert "<th>&lt;h&gt;</th>" in table
    assert '<tr class="pass"><td>&amp;</td><td>0.123457</td></tr>' in table
    page = html_report.page("a < b", [html_report.section("s", table)])
    assert "<title>a &lt; b</title>" in page
    assert page.count("<table>") == 1


def test_a_consumed_frame_shows_the_table_expectations_every_column(
    sample: pd.DataFrame,
) -> None:
    """Columns no expectation names are freed only after the table's expectations ran: an
    inferred suite has no type expectation, so GX validates the frame itself, not a copy."""
    suite = {
        "name": "columns",
        "expectations": [
            {
                "type": "expect_table_columns_to_match_set",
                "kwargs": {"column_set": list(sample.columns), "exact_match": True},
            },
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "region"}},
        ],
    }
    result = audit_frame(sample.copy(), DATA, AuditSpec(suite=suite), consume=True)
    table = result.gx_result["results"][0]
    assert table["success"], table["result"]


def test_a_consumed_frame_gives_the_same_audit_and_is_left_empty(sample: pd.DataFrame) -> None:
    """run_audit lets the validation free each column as it goes (`consume`): the checks and
    GX results must be those of the audit that keeps the frame whole."""
    broken = sample.copy()
    broken.loc[broken.index[:30], "total_charges"] = None
    broken.loc[broken.index[:4], "region"] = "atlantis"
    kept = audit_frame(broken, DATA, AUDIT)
    consumed_frame = broken.copy()
    consumed = audit_frame(consumed_frame, DATA, AUDIT, consume=True)
    assert consumed.checks == kept.checks
    assert consumed.rows == kept.rows == len(broken)
    drop_time = {"meta": None}
    assert {**consumed.gx_result, **drop_time} == {**kept.gx_result, **drop_time}
    assert consumed.gx_result["meta"]["column_batches"] == kept.gx_result["meta"]["column_batches"]
    assert not kept.passed and list(consumed_frame.columns) == []
    assert list(broken.columns) == list(sample.columns), "without consume the frame is kept"
