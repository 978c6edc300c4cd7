"""The audit gate, and the data tests: the sample data must pass the default suite, broken
data must fail it with a message naming the check, the column and the values seen."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
import pytest

from steps.audit.checks import Source
from steps.audit.step import _for_gx, audit_frame, build_suite, render_report
from steps.core import html_report
from steps.core.errors import BadInput
from steps.core.names import Artifact, Param
from steps.core.specs import AuditSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import read_table
from steps.data.synth import data_spec, generate

DATA = data_spec()
SUITE_FILE = Path(__file__).parents[1] / "config" / "expectations" / "default.json"
SUITE: dict[str, Any] = json.loads(SUITE_FILE.read_text())
AUDIT = AuditSpec(suite=SUITE, min_rows=100)


def run_step(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steps", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def audit_args(data_uri: str, out: Path, audit: AuditSpec = AUDIT) -> list[str]:
    return [
        "audit", "--data-uri", data_uri, "--data-spec", DATA.model_dump_json(),
        "--audit-spec", audit.model_dump_json(), "--out", str(out),
    ]  # fmt: skip


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


def test_cli_passes_on_good_data_in_s3(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    generate(500, seed=3).to_parquet(tmp_path / "d.parquet", index=False)
    store.upload_file(tmp_path / "d.parquet", "inputs/d.parquet")
    out = tmp_path / "out"
    result = run_step(s3_env, *audit_args(store.uri("inputs/d.parquet"), out))
    assert result.returncode == 0, result.stderr
    params = {p.name: p.read_text() for p in (out / "parameters").iterdir()}
    assert params == {
        Param.PASSED: "true",
        Param.ROWS: "500",
        Param.CRITICAL_FAILURES: "0",
        Param.WARNINGS: "0",
    }
    saved = json.loads((out / Artifact.AUDIT_RESULT.filename).read_text())
    assert saved["passed"] is True
    assert saved["great_expectations"]["statistics"]["evaluated_expectations"] == len(
        SUITE["expectations"]
    )
    assert (out / Artifact.AUDIT_REPORT.filename).read_text().startswith("<!DOCTYPE html>")


def test_cli_fails_the_gate_with_a_message_and_a_report(tmp_path: Path) -> None:
    frame = generate(500, seed=3)
    frame.loc[:6, "contract"] = "lifetime"
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "out"
    result = run_step({}, *audit_args(str(tmp_path / "d.csv"), out))
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert "expect_column_values_to_be_in_set on column 'contract'" in message
    assert "7 unexpected (1.40%), e.g. [lifetime]" in message
    assert "expected value_set=[month-to-month, one-year, two-year]" in message
    assert "audit-report artifact" in message
    assert (out / "parameters" / Param.PASSED).read_text() == "false"
    assert (out / "parameters" / Param.CRITICAL_FAILURES).read_text() == "1"
    assert "lifetime" in (out / Artifact.AUDIT_REPORT.filename).read_text()


def test_cli_bad_input_exits_2_with_no_outputs(tmp_path: Path) -> None:
    generate(200, seed=3).to_parquet(tmp_path / "d.parquet", index=False)
    cases = [
        (audit_args(str(tmp_path / "absent.parquet"), tmp_path / "a"), "data file not found"),
        (
            audit_args(
                str(tmp_path / "d.parquet"),
                tmp_path / "b",
                AuditSpec(suite={"expectations": [{"type": "expect_nothing", "kwargs": {}}]}),
            ),
            "expectation #0 (expect_nothing)",
        ),
    ]
    for args, message in cases:
        result = run_step({}, *args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert not Path(args[-1]).exists()
