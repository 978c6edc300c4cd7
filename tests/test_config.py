"""Config loading: defaults, overrides, and bad files that name the file and the key."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflows.config import ConfigError, dotted_leaves, load_config

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


@pytest.mark.parametrize(
    ("assignment", "key", "expected"),
    [
        # Label values: text as typed, where YAML 1.1 would give a bool or no value at all.
        ("data.positive_class=>50K", "positive_class", ">50K"),
        ("data.positive_class=yes", "positive_class", "yes"),
        ("data.positive_class=no", "positive_class", "no"),
        ("data.positive_class=1", "positive_class", 1),
        ("data.positive_class=true", "positive_class", True),
        ("data.label=2024-01-01", "label", "2024-01-01"),
        ("data.label=0x10", "label", "0x10"),
        ("data.row_key=null", "row_key", None),
        ("data.categorical=[a, b]", "categorical", ["a", "b"]),
    ],
)
def test_set_takes_text_keys_as_typed(
    tmp_path: Path, assignment: str, key: str, expected: object
) -> None:
    data = load_config(write(tmp_path, ""), [assignment]).pipeline.data
    assert getattr(data, key) == expected


def test_a_set_value_that_is_not_yaml_says_how_to_quote(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, ""), ["train.rounds=[1"])
    message = str(error.value)
    assert message.startswith("--set train.rounds=[1: not a YAML value")
    assert "quote it" in message and "\n" not in message


def test_errors_from_set_and_environment_blame_them_not_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  rounds: 10\n")
    with pytest.raises(ConfigError) as from_set:
        load_config(path, ["train.eta=-1"])
    assert str(from_set.value).startswith("--set train.eta: key 'train.eta': ")
    with pytest.raises(ConfigError) as from_env:
        load_config(path, [], {"MLPIPE_S3_BUCKET": "Not_A_Bucket"})
    assert str(from_env.value).startswith(
        "environment variable MLPIPE_S3_BUCKET: key 'storage.bucket': "
    )
    with pytest.raises(ConfigError) as from_file:
        load_config(write(tmp_path, "train:\n  eta: -1\n"), ["train.rounds=5"])
    assert str(from_file.value).startswith(f"{path}: key 'train.eta': ")


def test_a_config_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model_name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9 at offset 15\)"
    ):
        load_config(path)


def test_relative_paths_resolve_once_against_a_documented_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File values against the file's folder; --set, environment and defaults against the
    working directory; the files that come with a config against its folder by default."""
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "p.yaml"
    path.write_text("storage:\n  data_dir: s3data\nengine:\n  workdir: ../runs\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    pipeline = load_config(path, ["data.uri=d.csv"], {"MLPIPE_DATA_URI": "ignored"}).pipeline
    assert pipeline.storage.data_dir == folder / "s3data"
    assert pipeline.engine.workdir == tmp_path / "runs"
    assert pipeline.data.uri == str(cwd / "d.csv")
    assert pipeline.audit.suite_file == folder / "expectations" / "default.json"
    assert pipeline.deploy.state_dir.startswith("~"), "expanded by the deploy step, not here"
    assert load_config(path, [], {"MLPIPE_DATA_URI": "s3://b/k.csv"}).pipeline.data.uri == (
        "s3://b/k.csv"
    )
    assert load_config(path, ["engine.workdir=w"]).pipeline.engine.workdir == cwd / "w"


def _keyed_lines(text: str) -> dict[str, str]:
    """Each `key: value` line of a block-style YAML file, by its dotted key."""
    stack: list[tuple[int, str]] = []
    lines = {}
    for line in text.splitlines():
        match = re.match(r"^( *)([A-Za-z_]+):", line)
        if not match:
            continue
        indent = len(match.group(1))
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, match.group(2))]
        lines[".".join(k for _, k in stack)] = line
    return lines


def test_local_yaml_holds_the_defaults_except_where_it_says_so() -> None:
    """config/local.yaml claims to spell out the code's defaults: every value that differs
    from PipelineConfig's default carries a `local choice` comment naming that default, and
    every such comment sits on a value that really differs. Paths compare where they point
    (the file's against its folder, the defaults against the working directory or, for the
    suite and slices files, the config's folder)."""
    text = LOCAL.read_text()
    loaded = load_config(LOCAL).pipeline.model_dump(mode="json")
    defaults = dotted_leaves(
        load_config(
            LOCAL.parent / "absent-on-purpose.yaml", allow_missing=True
        ).pipeline.model_dump(mode="json")
    )
    values = dotted_leaves(loaded)
    lines = _keyed_lines(text)
    in_file = dotted_leaves(yaml.safe_load(text))
    differing = {key for key in in_file if values[key] != defaults[key]}
    marked = {key for key, line in lines.items() if "local choice (default: " in line}
    assert differing == marked
    for key in marked:
        stated = lines[key].split("local choice (default: ", 1)[1].split(")", 1)[0]
        assert yaml.safe_load(stated) == defaults[key], key
