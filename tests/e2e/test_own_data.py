"""Any binary-labelled file in one command: the whole pipeline, through `mlpipe run --data
FILE --label COLUMN`, on a file nobody described (real S3, real servers)."""

import json
import re
from pathlib import Path

import pytest

from tests.support.commands import mlpipe
from tests.support.own_data import own_data


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
