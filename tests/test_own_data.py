"""Any binary-labelled file in one command: what `mlpipe init` and `mlpipe run --label` infer
(unit), the files init writes (run loads them), the bad input they refuse (exit 2, one line,
nothing written), and the whole pipeline on a file nobody described (end to end, real S3)."""

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.audit.step import build_suite
from steps.core.errors import BadInput
from steps.data.infer import infer
from steps.deploy.local import stop_server
from tests.test_end_to_end import mlpipe

ROOT = Path(__file__).resolve().parents[1]


def own_data(rows: int, seed: int = 0) -> pd.DataFrame:
    """Columns as real files have them: an ID, names with spaces and accents, '?' for missing,
    integer codes, free text, and a yes/no label that depends on three of the features."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    région = rng.choice(["nord", "sud", "est", "ouest"], rows)
    plan = rng.integers(1, 4, rows)
    balance = rng.gamma(2.0, 500.0, rows).round(2)
    logit = -2.0 + 0.04 * (age - 45) + (région == "est") * 1.2 + (plan == 3) * 0.8
    logit += balance / 1500
    label = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "client id": rng.permutation(rows) + 10_000,
            "région": région,
            "account age": age,
            "plan": plan,
            "balance €": balance,
            "note": [f"called on day {i}" for i in rng.integers(0, 10**6, rows)],
            "churned?": label,
        }
    )
    frame["région"] = frame["région"].where(rng.random(rows) > 0.05, "?")
    return frame


def steps_init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steps", "init", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=300,
    )


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


BAD = [
    ("three label values", lambda f: f.assign(**{"churned?": ["a", "b", "c"] * (len(f) // 3)}),
     "churned?", [], "label 'churned?' is not binary: 3 distinct values (a, b, c)"),
    ("one class", lambda f: f.assign(**{"churned?": "no"}), "churned?", [],
     "label 'churned?' has one class only ('no' in all 300 rows)"),
    ("no label column", lambda f: f, "churn", [], "no label column 'churn'; columns are "),
    ("only an ID and the label", lambda f: f[["client id", "churned?"]], "churned?", [],
     "no feature columns left to train on besides the label 'churned?' ('client id': row key"),
    ("ambiguous labels", lambda f: f.assign(**{"churned?": ["B", "M", "M"] * (len(f) // 3)}),
     "churned?", [], "which value of label 'churned?' is the positive class? It has 'B' (100 "
     "rows, 33.3%), 'M' (200 rows, 66.7%); say it with --positive-class, e.g. --positive-class B"),
    ("a positive class the labels lack", lambda f: f, "churned?", ["--positive-class", "maybe"],
     "--positive-class 'maybe' is not a value of label 'churned?'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "label", "extra", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, change: object, label: str, extra: list[str], message: str
) -> None:
    assert callable(change)
    change(own_data(300)).to_csv(tmp_path / "d.csv", index=False)
    result = steps_init("--data", "d.csv", "--label", label, "--out", "out", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: data d.csv: ")
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_ambiguous_labels_run_once_the_positive_class_is_given(tmp_path: Path) -> None:
    frame = own_data(300).assign(**{"churned?": ["B", "M", "M"] * 100})
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = steps_init("--data", "d.csv", "--label", "churned?", "--positive-class", "B",
                        "--out", "out", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'positive_class: "B"' in (tmp_path / "out" / "config.yaml").read_text()


def test_init_writes_files_the_user_owns_and_run_reads_them(tmp_path: Path) -> None:
    own_data(3000).to_csv(tmp_path / "clients.csv", index=False)
    result = mlpipe("init", "--data", "clients.csv", "--label", "churned?", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "config" / "clients"
    assert result.stdout.split() == [
        str(Path("config/clients") / name) for name in ("config.yaml", "expectations.json",
                                                        "slices.yaml")
    ]  # fmt: skip
    config = (folder / "config.yaml").read_text()
    # A comment per choice, and paths relative to the config's folder.
    assert re.search(r'row_key: "client id" +# unique in each of the 3000 rows', config)
    assert re.search(r'- "note" +# \d+ distinct strings in 3000 rows: free text', config)
    assert 'uri: "../../clients.csv"' in config and "suite_file: expectations.json" in config

    suite = json.loads((folder / "expectations.json").read_text())
    build_suite(suite)  # a valid GX suite, every expectation marked
    severities = {(e["type"], e["kwargs"].get("column")): e["meta"]["severity"]
                  for e in suite["expectations"]}  # fmt: skip
    assert severities[("expect_column_values_to_be_in_set", "churned?")] == "critical"
    assert severities[("expect_column_values_to_be_in_set", "région")] == "warning"
    assert severities[("expect_column_values_to_be_in_type_list", "balance €")] == "critical"
    assert all(e["notes"] for e in suite["expectations"])
    ranges = {e["kwargs"]["column"]: e["kwargs"] for e in suite["expectations"]
              if e["type"] == "expect_column_values_to_be_between"}  # fmt: skip
    assert ranges["account age"]["min_value"] <= 18 and ranges["account age"]["max_value"] >= 79
    assert suite["meta"]["mlpipe_inferred"]["source"] == "clients.csv"

    slices = (folder / "slices.yaml").read_text()
    assert '- by: [{column: "région"}]' in slices and "bins: [" in slices

    shown = mlpipe("config", "show", "--config", str(folder / "config.yaml"), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "model_name: clients" in shown.stdout and "row_key: client id" in shown.stdout
    compiled = mlpipe("compile", "--config", str(folder / "config.yaml"), "--out", "k8s",
                      cwd=tmp_path)  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    assert "client id" in (tmp_path / "k8s" / "workflow-template.yaml").read_text()

    # The files are the user's now: a second init does not overwrite them.
    (folder / "slices.yaml").write_text("# mine\n" + slices)
    again = mlpipe("init", "--data", "clients.csv", "--label", "churned?", cwd=tmp_path)
    assert again.returncode == 2 and "already exist(s) and may hold your edits" in again.stderr
    assert (folder / "slices.yaml").read_text().startswith("# mine")


def test_an_unreadable_inference_is_bad_input() -> None:
    with pytest.raises(BadInput, match="data file not found"):
        infer(ROOT / "absent.csv", "y")


@pytest.fixture
def serving_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "serving"
    stop_server(tmp_path / "serving")


def test_the_readme_command_runs_a_file_nobody_described(tmp_path: Path, serving_dir: Path) -> None:
    """README's "Your own data": one command, in a folder without any config, on a file whose
    columns have spaces, accents, '?' for missing, an ID and free text."""
    own_data(6000).to_csv(tmp_path / "clients.csv", index=False)
    result = mlpipe(
        "run", "--data", "clients.csv", "--label", "churned?", "--set", "train.rounds=40",
        "--set", f"deploy.state_dir={serving_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = re.search(r"Succeeded (clients-training-\w+)", result.stdout)
    assert run, result.stdout[-2000:]
    got = mlpipe("artifacts", "get", run[1], "audit", "audit-report", "-o", "a.html", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    audit = (tmp_path / "a.html").read_text()
    assert "was inferred from the data (clients.csv) by mlpipe run --label" in audit
    assert "&#x27;client id&#x27;: row key" in audit or "'client id': row key" in audit
    for name, step in (("quantize-report", "quantize"), ("evaluation", "evaluate")):
        got = mlpipe("artifacts", "get", run[1], step, name, "-o", f"{name}.json", cwd=tmp_path)
        assert got.returncode == 0, got.stderr
    quantized = json.loads((tmp_path / "quantize-report.json").read_text())
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert quantized["calibration"]["rows"] > 400  # the validation split
    assert evaluation["metrics"]["auc"] > 0.7
    assert evaluation["metrics"]["ece"] == pytest.approx(quantized["test_ece_after"], abs=1e-3)
    slices = {s["group"] for s in evaluation["slices"]}
    assert {"région", "plan"} <= slices


def test_a_leaking_feature_is_stopped_by_the_audit_naming_it(tmp_path: Path) -> None:
    frame = own_data(3000)
    frame["refund issued"] = (frame["churned?"] == "yes").astype(int)
    frame.to_csv(tmp_path / "leaky.csv", index=False)
    result = mlpipe("run", "--data", "leaky.csv", "--label", "churned?", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stdout.split())  # the run's summary, as the console wrapped it
    assert "Failed: audit failed: exit code 1: error: audit of " in said
    assert "label leakage on column 'refund issued': observed AUC 1.0000" in said
    assert "train Omitted: depends 'provenance' not met" in said  # nothing was trained
