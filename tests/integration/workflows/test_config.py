"""Config loading: defaults, overrides, and bad files that name the file and the key."""

from pathlib import Path

from tests.support.commands import mlpipe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_cli_exits_2_on_a_bad_config_and_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  eta: -1\n")
    result = mlpipe("config", "show", "--config", str(path))
    assert result.returncode == 2
    assert "train.eta" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_exits_2_on_a_missing_config_file(tmp_path: Path) -> None:
    result = mlpipe("compile", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert not list(tmp_path.glob("*.yaml"))


def test_config_show_prints_the_resolved_values() -> None:
    result = mlpipe("config", "show", "--set", "train.rounds=7")
    assert result.returncode == 0, result.stderr
    assert "rounds: 7" in result.stdout
