"""The audit's built-in checks (data tests): duplicates, leakage, label conflicts, balance,
nulls, and the comparisons with the stable model's reference profile, down to the bad input
of the issue, each refused with a message naming the check, the column, what was seen and
the bound, and nothing half-written."""

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
from steps.core.names import Artifact, ModelFile, Param
from steps.core.specs import AuditSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_split, read_manifest, read_table
from steps.data.features import schema_from_manifest
from steps.data.profile import assemble, count, layout_for, quantile_edges
from steps.data.synth import data_spec, generate
from steps.provenance.step import run_provenance

DATA = data_spec()
SUITE = json.loads((Path(__file__).parents[1] / "config/expectations/default.json").read_text())
AUDIT = AuditSpec(suite=SUITE, min_rows=100)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate(3000, seed=21)


def as_read(frame: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    frame.to_parquet(tmp / "d.parquet", index=False)
    return read_table(str(tmp / "d.parquet"), DATA, None)


def failures(frame: pd.DataFrame, reference: Reference | None = None) -> dict[str, list[str]]:
    """Failed built-in checks: name -> descriptions."""
    found: dict[str, list[str]] = {}
    for check in builtin_checks(frame, DATA, AUDIT, reference):
        if not check.passed:
            found.setdefault(check.name, []).append(check.describe())
    return found


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


# --- against the reference profile -----------------------------------------------------------


def publish_stable(store: ArtifactStore, frame: pd.DataFrame, tmp: Path) -> None:
    """A registry whose stable model was trained on `frame`: the profile train would write,
    and the pointers deploy writes (stable.json -> version record -> model digest)."""
    frame.to_parquet(tmp / "train.parquet", index=False)
    record = run_provenance(str(tmp / "train.parquet"), DATA, 1, store, tmp / "prov")
    manifest = read_manifest(store, record.dataset_uri)
    schema = schema_from_manifest(manifest)
    rows = pd.concat([load_split(store, record.dataset_uri, s) for s in Split])
    layout = layout_for(schema, manifest.label, quantile_edges(rows, schema), "region")
    profile = assemble(count(rows, layout), layout)
    store.put_bytes(
        f"models/m1/{ModelFile.REFERENCE_PROFILE.value}", profile.model_dump_json().encode()
    )
    version = "registry/churn/versions/v1"
    record = {"model_digest": "m1", "dataset_uri": "s3://b/d", "digest": "v1"}
    store.put_json(f"{version}/record.json", record)
    pointer = {"version_key": version, "digest": "v1", "deployed_at": "2026-11-01T00:00:00+00:00"}
    store.put_json("registry/churn/stable.json", pointer)


@pytest.fixture
def reference(store: ArtifactStore, clean: pd.DataFrame, tmp_path: Path) -> Reference:
    publish_stable(store, clean, tmp_path)
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


def test_without_a_stable_model_the_reference_checks_are_skipped_and_said_so(
    store: ArtifactStore, clean: pd.DataFrame, tmp_path: Path
) -> None:
    note = stable_reference(store, "churn")
    assert isinstance(note, str)
    assert "no stable model 'churn' yet" in note and "skipped" in note
    result = audit_frame(as_read(clean, tmp_path), DATA, AUDIT, None, [note])
    assert result.passed and result.notes == [note]


# --- the step: bad input, clear message, nothing half-written ---------------------------------


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
    publish_stable(store, clean, tmp_path)
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
