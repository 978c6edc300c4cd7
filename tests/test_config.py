"""Config loading: defaults, overrides, and bad files that name the file and the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from workflows.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "config" / "local.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def mlpipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_shipped_configs_load() -> None:
    local = load_config(LOCAL).pipeline
    cluster = load_config(ROOT / "config" / "cluster.yaml").pipeline
    assert local.storage.mode == "embedded"
    assert cluster.storage.mode == "external" and cluster.storage.endpoint
    assert cluster.train.workers == 4


def test_set_and_environment_override_in_that_order(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  rounds: 10\n")
    loaded = load_config(
        path, ["train.rounds=20", "data.uri=s3://b/x.csv"], {"MLPIPE_S3_BUCKET": "other"}
    )
    assert loaded.pipeline.train.rounds == 20
    assert loaded.pipeline.data.uri == "s3://b/x.csv"
    assert loaded.pipeline.storage.bucket == "other"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("train:\n  eta: -0.1\n", "train.eta", "greater than 0"),
        ("train:\n  rounds: 0\n", "train.rounds", "greater than or equal to 1"),
        ("train:\n  depth: 4\n", "train.depth", "unknown key"),
        ("storage:\n  mode: cloud\n", "storage.mode", "'embedded' or 'external'"),
        ("trian:\n  rounds: 4\n", "trian", "unknown key"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, [], {})
    message = str(raised.value)
    assert str(path) in message and f"'{key}'" in message and expected in message


def test_a_misplaced_token_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "argo:\n  token:\n    value: s3cr3t-t0ken\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, [], {})
    assert "'argo.token'" in str(raised.value) and "s3cr3t-t0ken" not in str(raised.value)


def test_malformed_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "train: [rounds: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, [], {})


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
