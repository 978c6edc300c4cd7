"""The harness does what every step's command line used to repeat: it parses what the
declaration says, writes the declared parameters, and raises a found failure last."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.core import harness
from steps.core.errors import BadInput, GateFailed
from steps.core.harness import Outcome, StepContext
from steps.core.names import Artifact, Param, Step
from steps.core.registry import DATA_SPEC, DATA_URI, Input, StepDef
from steps.core.specs import DataSpec

COUNT = Input("count", int, "how many", required=False)
FAKE = StepDef(
    Step.AUDIT,
    __name__,
    inputs=(DATA_URI, DATA_SPEC, COUNT),
    input_artifacts=(Artifact.MODEL,),
    outputs=(Param.PASSED, Param.ROWS),
    artifacts=(Artifact.AUDIT_RESULT,),
)
"""A step whose computation is `run` below: it answers what a test put in ANSWER."""

ANSWER: dict[str, Outcome] = {}
SEEN: list[StepContext] = []


def run(ctx: StepContext) -> Outcome:
    SEEN.append(ctx)
    ctx.output(Artifact.AUDIT_RESULT).write_text("{}")
    return ANSWER["outcome"]


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    SEEN.clear()
    ANSWER["outcome"] = Outcome()
    yield


def argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--data-uri", "s3://b/k.csv", "--data-spec", DataSpec().model_dump_json(),
        "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"), *extra,
    ]  # fmt: skip


def test_inputs_are_parsed_as_declared(tmp_path: Path) -> None:
    ANSWER["outcome"] = Outcome(parameters={Param.PASSED: True, Param.ROWS: 3})
    assert harness.run(FAKE, argv(tmp_path, "--count", "4"), environ={}) == 0
    [ctx] = SEEN
    assert ctx.get(DATA_URI) == "s3://b/k.csv"
    assert ctx.spec(DataSpec) == DataSpec()
    assert ctx.get(COUNT) == 4
    assert ctx.artifact(Artifact.MODEL) == tmp_path / "model"
    assert (tmp_path / "out" / "parameters" / "passed").read_text() == "true"
    assert (tmp_path / "out" / "parameters" / "rows").read_text() == "3"
    assert ctx.progress_file is None and not ctx.has_store


def test_a_bad_spec_is_bad_input_before_the_step_runs(tmp_path: Path) -> None:
    args = argv(tmp_path)
    args[args.index("--data-spec") + 1] = '{"labl": "x"}'
    with pytest.raises(BadInput, match="invalid DataSpec: labl: Extra inputs"):
        harness.run(FAKE, args, environ={})
    assert SEEN == []


def test_flags_are_exact_not_abbreviations(tmp_path: Path) -> None:
    args = argv(tmp_path)
    args[args.index("--data-uri")] = "--data"
    with pytest.raises(SystemExit) as exited:
        harness.parser(FAKE).parse_args(args)
    assert exited.value.code == 2


def test_a_failure_is_raised_after_the_outputs_are_written(tmp_path: Path) -> None:
    failure = GateFailed("rows below the bound")
    ANSWER["outcome"] = Outcome(parameters={Param.PASSED: False}, failure=failure)
    with pytest.raises(GateFailed, match="rows below the bound"):
        harness.run(FAKE, argv(tmp_path), environ={})
    assert (tmp_path / "out" / "parameters" / "passed").read_text() == "false"


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({Param.PASSED: True}, "declares"),
        ({Param.PASSED: True, Param.ROWS: 1, Param.AUC: 0.5}, "declares"),
    ],
    ids=["one missing", "one undeclared"],
)
def test_parameters_must_match_the_declaration(
    tmp_path: Path, parameters: dict[Param, object], problem: str
) -> None:
    ANSWER["outcome"] = Outcome(parameters=parameters)
    with pytest.raises(RuntimeError, match=problem):
        harness.run(FAKE, argv(tmp_path), environ={})
    assert not (tmp_path / "out" / "parameters").exists(), "nothing half-written"


def test_the_store_is_named_when_not_configured(tmp_path: Path) -> None:
    ANSWER["outcome"] = Outcome(parameters={Param.PASSED: True, Param.ROWS: 3})
    harness.run(FAKE, argv(tmp_path), environ={})
    with pytest.raises(Exception, match="artifact store not configured: set MLPIPE_S3_ENDPOINT"):
        _ = SEEN[0].store
