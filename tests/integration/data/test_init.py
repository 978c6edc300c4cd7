"""`python -m steps init` and `mlpipe init`: the files they write (config, GX suite, slices;
`mlpipe config show` and `compile` read them), and the bad input they refuse (exit 2, one
line, nothing written)."""

import json
import re
from pathlib import Path

import pytest

from steps.audit.step import build_suite
from tests.support.commands import mlpipe, run_step
from tests.support.own_data import own_data

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
    result = run_step(["init", "--data", "d.csv", "--label", label, "--out", "out", *extra],
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: data d.csv: ")
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_ambiguous_labels_run_once_the_positive_class_is_given(tmp_path: Path) -> None:
    frame = own_data(300).assign(**{"churned?": ["B", "M", "M"] * 100})
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = run_step(["init", "--data", "d.csv", "--label", "churned?", "--positive-class", "B",
                       "--out", "out"], cwd=tmp_path)  # fmt: skip
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
