"""Every user error is one clean line with the documented exit code (2 bad input or config,
3 storage or infrastructure), never a traceback, and user text is printed as typed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mlpipe(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        check=False,
        timeout=300,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_set_value_with_brackets_is_printed_as_typed() -> None:
    line = one_error_line(mlpipe("config", "show", "--set", "train.rounds=abc[/x]"), 2)
    assert line.startswith("error: --set train.rounds: key 'train.rounds': ")
    assert "'abc[/x]'" in line


def test_an_unquoted_label_value_is_taken_as_text() -> None:
    result = mlpipe("config", "show", "--set", "data.positive_class=>50K", "--set", "data.label=y")
    assert result.returncode == 0, result.stderr
    assert "positive_class: '>50K'" in result.stdout


def test_a_set_value_that_is_not_yaml_says_how_to_quote() -> None:
    line = one_error_line(mlpipe("config", "show", "--set", "train.rounds=[1"), 2)
    assert "not a YAML value" in line and "quote it" in line


def test_an_environment_value_is_blamed_on_its_variable() -> None:
    result = mlpipe("config", "show", env={"MLPIPE_S3_BUCKET": "Bad_Bucket"})
    line = one_error_line(result, 2)
    assert line.startswith("error: environment variable MLPIPE_S3_BUCKET: key 'storage.bucket'")
    assert "[a-z0-9]" in line, "the pattern's brackets survive printing"


def test_a_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"model_name: \xff\xfe\n")
    line = one_error_line(mlpipe("config", "show", "--config", str(config)), 2)
    assert f"{config}: not UTF-8 text" in line


def test_data_that_is_a_folder_is_named(tmp_path: Path) -> None:
    args = ["--set", f"storage.data_dir={tmp_path / 's3'}", "--set", f"engine.workdir={tmp_path}"]
    line = one_error_line(mlpipe("run", "--data", str(tmp_path), *args), 2)
    assert f"{tmp_path} is a folder" in line


@pytest.mark.parametrize(
    "command", [["reports", "nope"], ["artifacts", "get", "nope", "a", "b", "-o", "x"]]
)
def test_an_unknown_run_is_named(tmp_path: Path, command: list[str]) -> None:
    line = one_error_line(mlpipe(*command, "--set", f"engine.workdir={tmp_path}"), 2)
    assert f"no finished run named 'nope' under {tmp_path}" in line


def test_synth_to_an_unwritable_place_is_bad_input(tmp_path: Path) -> None:
    line = one_error_line(mlpipe("data", "synth", "--rows", "50", "--out", "/proc/x.parquet"), 2)
    assert line.startswith("error: synth: --out /proc/x.parquet: cannot write it")
    assert not list(Path("/proc").glob(".x.parquet.*"))
