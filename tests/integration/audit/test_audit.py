"""The audit gate, and the data tests: the sample data must pass the default suite, broken
data must fail it with a message naming the check, the column and the values seen."""

import json
from pathlib import Path

from steps.core.names import Artifact, Param
from steps.core.specs import AuditSpec
from steps.core.store import ArtifactStore
from steps.data.synth import generate
from tests.support.audit import AUDIT, DATA, SUITE
from tests.support.commands import run_step


def audit_args(data_uri: str, out: Path, audit: AuditSpec = AUDIT) -> list[str]:
    return [
        "audit", "--data-uri", data_uri, "--data-spec", DATA.model_dump_json(),
        "--audit-spec", audit.model_dump_json(), "--out", str(out),
    ]  # fmt: skip


def test_cli_passes_on_good_data_in_s3(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    generate(500, seed=3).to_parquet(tmp_path / "d.parquet", index=False)
    store.upload_file(tmp_path / "d.parquet", "inputs/d.parquet")
    out = tmp_path / "out"
    result = run_step(audit_args(store.uri("inputs/d.parquet"), out), s3_env)
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
    result = run_step(audit_args(str(tmp_path / "d.csv"), out))
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
        result = run_step(args)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert not Path(args[-1]).exists()
