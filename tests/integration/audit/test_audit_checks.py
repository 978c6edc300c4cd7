"""The audit's checks against the stable model's reference profile in the bucket, and the
step refusing unreadable data and failing the gate with its whole report, nothing
half-written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from steps.audit.checks import Reference, Severity, builtin_checks
from steps.audit.step import audit_frame, stable_reference
from steps.core.attestation import open_envelope
from steps.core.names import Artifact, Param
from steps.core.store import ArtifactStore
from steps.data.synth import generate
from tests.support.audit import AUDIT, DATA, as_read, failures
from tests.support.stable_model import register_stable_model


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate(3000, seed=21)


@pytest.fixture
def reference(store: ArtifactStore, clean: pd.DataFrame, tmp_path: Path) -> Reference:
    register_stable_model(store, clean)
    found = stable_reference(store, "churn")
    assert isinstance(found, Reference), found
    return found


def test_labels_flipped_inside_one_slice_are_a_poisoning_signal(
    clean: pd.DataFrame, reference: Reference, tmp_path: Path
) -> None:
    fresh = generate(3000, seed=22)
    assert failures(as_read(fresh, tmp_path), reference) == {}
    poisoned = fresh.copy()
    east = poisoned["region"] == "east"
    poisoned.loc[east, "churned"] = poisoned.loc[east, "churned"].map({"yes": "no", "no": "yes"})
    found = failures(as_read(poisoned, tmp_path), reference)
    [message] = found["label-rate shift in slice region=east"]
    assert "on column 'region'" in message
    assert "beyond the typical shift" in message and "expected within 15.00%" in message
    assert list(found) == ["label-rate shift in slice region=east"], "no other slice is blamed"


def test_schema_and_unseen_categories_are_checked_against_the_reference(
    clean: pd.DataFrame, reference: Reference, tmp_path: Path
) -> None:
    changed = generate(3000, seed=23).drop(columns=["age"])
    changed["tenure_months"] = changed["tenure_months"].astype(str) + " months"
    changed.loc[changed.index[:300], "plan"] = "enterprise"
    found = failures(as_read(changed, tmp_path), reference)
    bound = "expected the stable model's features, by name and kind"
    assert found["feature removed"] == [
        f"feature removed on column 'age': observed not in the data; {bound}"
    ]
    assert found["feature type changed"] == [
        "feature type changed on column 'tenure_months': observed text now, numeric in the "
        f"stable model; {bound}"
    ]
    [undeclared] = found["text column not declared"]
    assert "'tenure_months': observed text values, e.g. '" in undeclared
    [unseen] = found["unseen categories"]
    assert "'plan': observed 10.00% of rows, e.g. ['enterprise']" in unseen
    severities = {c.name: c.severity for c in builtin_checks(
        as_read(changed, tmp_path), DATA, AUDIT, reference) if not c.passed}  # fmt: skip
    assert severities["feature removed"] is severities["feature type changed"] is Severity.CRITICAL


def test_a_renamed_feature_is_named_and_a_new_column_is_a_warning(
    reference: Reference, tmp_path: Path
) -> None:
    """`age` renamed `age_years` keeps its distribution: one finding naming both; a column
    the stable model never had is a warning naming it, never a failure later at the canary."""
    changed = generate(3000, seed=23).rename(columns={"age": "age_years"})
    changed["score"] = range(len(changed))
    changed["score"] = changed["score"] % 7
    checks = [c for c in builtin_checks(as_read(changed, tmp_path), DATA, AUDIT, reference)
              if not c.passed]  # fmt: skip
    renamed = next(c for c in checks if c.name == "feature renamed")
    assert renamed.column == "age" and renamed.severity is Severity.CRITICAL
    assert "gone; new column 'age_years' has its distribution (PSI 0.0" in renamed.observed
    new = [c for c in checks if c.name == "new column"]
    assert [(c.column, c.severity) for c in new] == [("score", Severity.WARNING)]
    assert "the new model takes it, so its clients must send it" in new[0].observed
    assert not [c for c in checks if c.name == "feature removed"]  # the rename says it


def test_without_a_stable_model_the_reference_checks_are_skipped_and_said_so(
    store: ArtifactStore, clean: pd.DataFrame, tmp_path: Path
) -> None:
    note = stable_reference(store, "churn")
    assert isinstance(note, str)
    assert "no stable model 'churn' yet" in note and "skipped" in note
    result = audit_frame(as_read(clean, tmp_path), DATA, AUDIT, None, [note])
    assert result.passed and result.notes == [note]


def audit_step(
    data: Path, out: Path, env: dict[str, str] | None = None, model: str | None = None
) -> subprocess.CompletedProcess[str]:
    args = ["audit", "--data-uri", str(data), "--data-spec", DATA.model_dump_json(),
            "--audit-spec", AUDIT.model_dump_json(), "--out", str(out)]  # fmt: skip
    if model:
        args += ["--model-name", model]
    return subprocess.run(
        [sys.executable, "-m", "steps", *args], env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


UNREADABLE = {
    "corrupted parquet": ("d.parquet", b"PAR1\x00garbage\x00PAR1", "cannot read parquet file"),
    "ragged csv": ("d.csv", b"customer_id,region,churned\na,east,yes\nb,west\n", "Expected 3"),
    "empty file": ("d.csv", b"", "Empty CSV file"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_an_unreadable_file_exits_2_and_writes_nothing(case: str, tmp_path: Path) -> None:
    name, content, message = UNREADABLE[case]
    (tmp_path / name).write_bytes(content)
    result = audit_step(tmp_path / name, tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: data {tmp_path / name}: ")
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def flip_east(frame: pd.DataFrame) -> pd.DataFrame:
    east = frame["region"] == "east"
    return frame.assign(
        churned=frame["churned"].where(~east, frame["churned"].map({"yes": "no", "no": "yes"}))
    )


GATED = {
    "wrong column type": (
        lambda f: f.assign(tenure_months=f["tenure_months"].astype(str) + "m"),
        "expect_column_values_to_be_in_type_list on column 'tenure_months'",
    ),
    "label missing": (lambda f: f.drop(columns=["churned"]), "label column present"),
    "one class": (lambda f: f.assign(churned="no"), "has one class only"),
    "NaN labels": (
        lambda f: f.assign(churned=f["churned"].where(f.index % 7 != 0)),
        "label 'churned' has 429 missing values",
    ),
    "30% duplicated rows": (
        lambda f: pd.concat([f, f.sample(frac=0.3, random_state=4)]),
        "duplicated rows: observed 900 of 3900 rows",
    ),
    "feature equal to the label": (
        lambda f: f.assign(leak=(f["churned"] == "yes").astype(int)),
        "label leakage on column 'leak': observed AUC 1.0000: reproduces the label",
    ),
    "labels flipped inside one slice": (
        flip_east,
        "label-rate shift in slice region=east on column 'region'",
    ),
}


@pytest.mark.parametrize("case", list(GATED))
def test_bad_data_fails_the_gate_with_a_message_and_a_whole_report(
    case: str,
    clean: pd.DataFrame,
    store: ArtifactStore,
    s3_env: dict[str, str],
    tmp_path: Path,
) -> None:
    change, message = GATED[case]
    register_stable_model(store, clean)
    data = tmp_path / "bad.parquet"
    change(generate(3000, seed=24)).to_parquet(data, index=False)
    out = tmp_path / "out"
    result = audit_step(data, out, s3_env, model="churn")
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and message in line
    assert "Full report: the audit-report artifact" in line
    report = json.loads((out / Artifact.AUDIT_RESULT.filename).read_text())
    assert report["passed"] is False
    assert any("reference profile" in note for note in report["notes"])
    assert (out / Artifact.AUDIT_REPORT.filename).read_text().rstrip().endswith("</html>")
    assert (out / "parameters" / Param.PASSED).read_text() == "false"
    statement = open_envelope(json.loads((out / Artifact.ATTESTATION.filename).read_text()), None)
    assert {s["name"] for s in statement["subject"]} == {
        Artifact.AUDIT_RESULT.filename, Artifact.AUDIT_REPORT.filename,
    }  # fmt: skip
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".part"))]
