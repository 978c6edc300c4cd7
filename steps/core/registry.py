"""The step registry: every command `python -m steps` runs, declared once.

A StepDef names a step's module (its computation, imported only when the step runs), its
inputs, its output parameters and artifacts, and what its container needs. Everything else
is derived from it: the step's argument parser and the work every step's command line does
(steps/core/harness.py), the Hera template and the DAG task (workflows/step_template.py,
workflows/step_task.py) and the workflow parameters (workflows/parameters.py). A name
spelled here is spelled the same in the manifest and in the step, because both read it here.

Import-light (no step code, no heavy library): workflows/ imports it at compile time.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

from steps.core.names import Artifact, ArtifactName, Param, Step
from steps.core.specs import (
    AuditSpec,
    DataSpec,
    DeploySpec,
    DriftSpec,
    EvaluateSpec,
    ModelCardSpec,
    QuantizeSpec,
    Spec,
    SummarySpec,
    TrainSpec,
)

T = TypeVar("T")


class Origin(StrEnum):
    """Where a template input gets its value in a workflow."""

    WORKFLOW = "workflow"
    """A workflow parameter of the same name, valued from the config."""
    TASK = "task"
    """Wired in the DAG (workflows/pipeline.py): an upstream output, an Argo variable or a
    value of the config that is not a workflow parameter."""


@dataclass(frozen=True)
class Input(Generic[T]):
    """A parameter a step takes: `--<name>` on its command line and, in a workflow, the
    template input (and for a workflow input the workflow parameter) of the same name."""

    name: str
    parse: Callable[[str], T]
    help: str
    origin: Origin = Origin.TASK
    spec: type[Spec] | None = None
    """The spec model a JSON value is parsed with (and read from the config with)."""
    required: bool = True
    default: str | None = None
    """For a command-line option no template passes (it is parsed like a given value)."""
    repeated: bool = False
    """Given any number of times (a positional: one or more values)."""
    positional: bool = False
    flag: bool = False
    """An option without a value (`--force`): True when given."""
    choices: tuple[str, ...] = ()


def spec_input(spec: type[Spec], origin: Origin = Origin.WORKFLOW) -> Input[Any]:
    """The input carrying a spec as JSON, named after the model: TrainSpec -> `train-spec`."""
    words = re.findall(r"[A-Z][a-z0-9]*", spec.__name__.removesuffix("Spec"))
    name = "-".join(word.lower() for word in words) + "-spec"
    return Input(name, spec.from_json_arg, f"{spec.__name__} as JSON", origin, spec=spec)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse reports a ValueError as such)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


# --- inputs shared by several steps ----------------------------------------------------------

DATA_URI = Input("data-uri", str, "the data: a local path or an s3:// URI", Origin.WORKFLOW)
DATA_SPEC = spec_input(DataSpec)
MODEL_NAME = Input(
    "model-name", str, "the model's name in the registry (its champion)", Origin.WORKFLOW
)
WORKERS = Input("workers", positive_int, "size of the training group", Origin.WORKFLOW)
TRAIN_SPEC = spec_input(TrainSpec)
DATASET_URI = Input("dataset-uri", str, "the canonical dataset: s3://<bucket>/datasets/<digest>")
ONNX_DIGEST = Input("onnx-digest", str, "sha256 of the ONNX model")


class Identity(StrEnum):
    """The ServiceAccount a step's pod runs as (config `argo.*service_account`)."""

    STEPS = "steps"
    DEPLOY = "deploy"
    """Rights to roll a model out: only the deploy step gets them."""


@dataclass(frozen=True)
class Resources:
    """What a step's container asks for; unset values take the config's step size."""

    cpu: str | None = None
    memory: str | None = None
    cpu_from_spec: bool = False
    """The request and limit are the spec's `cpu` (train: also XGBoost's nthread, so a
    worker never runs more threads than it has cores)."""
    identity: Identity = Identity.STEPS


@dataclass(frozen=True)
class StepDef:
    """One step: a command of `python -m steps`, and for a workflow step its template."""

    name: Step
    module: str
    """Holds `run(ctx: StepContext) -> Outcome` (steps/core/harness.py)."""
    inputs: tuple[Input[Any], ...] = ()
    """What its template passes, each as `--<name> {{inputs.parameters.<name>}}`."""
    options: tuple[Input[Any], ...] = ()
    """Command-line options no template passes (a tool's, or a default a template keeps)."""
    input_artifacts: tuple[ArtifactName, ...] = ()
    """Files or folders the engine places in the container; the step gets each path as
    `--<artifact name>`."""
    outputs: tuple[Param, ...] = ()
    artifacts: tuple[ArtifactName, ...] = ()
    resources: Resources = Resources()
    template: str | None = None
    """The Hera template's name, when not the step's."""
    attested: bool = False
    """Writes an in-toto statement of what it read and produced (steps/core/attestation.py)."""
    daemon: bool = False
    kept_out: tuple[str, ...] = ()
    """Libraries its process is kept from importing (`python -m steps` makes their import
    fail) because a library it uses imports them for features it never calls."""

    @property
    def template_name(self) -> str:
        return self.template or self.name.value

    @property
    def writes_outputs(self) -> bool:
        """Gets `--out`, the folder its output parameters and artifacts are written under."""
        return bool(self.outputs or self.artifacts)

    @property
    def specs(self) -> tuple[type[Spec], ...]:
        return tuple(i.spec for i in self.inputs if i.spec is not None)

    @property
    def arguments(self) -> tuple[Input[Any], ...]:
        """Every input and option: its command line."""
        return self.inputs + self.options


ROWS = Input("rows", int, "rows to generate")
OUT_FILE = Input("out", Path, "output file (.parquet or .csv)")
SEED = Input("seed", int, "random seed", default="0")
COVARIATE_DRIFT = Input(
    "covariate-drift",
    str,
    "FEATURE=STRENGTH: move a numeric feature by STRENGTH standard deviations, or tilt a "
    "categorical feature's mix (repeatable)",
    repeated=True,
)
NEW_CATEGORY = Input(
    "new-category",
    str,
    "FEATURE=VALUE:SHARE: give SHARE of the rows a category training never saw (repeatable)",
    repeated=True,
)
CONCEPT_DRIFT = Input(
    "concept-drift",
    float,
    "0-1: how far the label's relation to the features turns (0.5 cancels effects)",
    default="0.0",
)
CHARGES_SCALE = Input(
    "charges-scale",
    float,
    "corrupt the feed: both charges multiplied after labelling (100: cents)",
    default="1.0",
)
SYNTH = StepDef(
    Step.SYNTH,
    "steps.data.synth",
    options=(ROWS, OUT_FILE, SEED, COVARIATE_DRIFT, NEW_CATEGORY, CONCEPT_DRIFT, CHARGES_SCALE),
)

AUDIT_SPEC = spec_input(AuditSpec)
AUDIT = StepDef(
    Step.AUDIT,
    "steps.audit.step",
    inputs=(
        DATA_URI,
        DATA_SPEC,
        AUDIT_SPEC,
        replace(MODEL_NAME, required=False, help="compare with this model's stable version"),
    ),
    outputs=(Param.PASSED, Param.ROWS, Param.CRITICAL_FAILURES, Param.WARNINGS),
    artifacts=(Artifact.AUDIT_REPORT, Artifact.AUDIT_RESULT),
    attested=True,
)

SHARDS = Input("shards", positive_int, "train/valid shards (workers)")
PROVENANCE = StepDef(
    Step.PROVENANCE,
    "steps.provenance.step",
    inputs=(DATA_URI, DATA_SPEC, SHARDS),
    outputs=(Param.DATASET_DIGEST, Param.DATASET_URI, Param.ROWS),
    artifacts=(Artifact.PROVENANCE,),
    attested=True,
)

PORT = Input("port", int, "port the workers connect to")
HOST = Input(
    "host",
    str,
    "address to listen on (default: $POD_IP, the pod's own IP, else 0.0.0.0)",
    required=False,
)
MAX_SECONDS = Input(
    "max-seconds",
    int,
    "seconds for the whole run, training included (default: no limit)",
    required=False,
)
XGBOOST_ONLY = ("sklearn",)
"""xgboost imports scikit-learn for its estimator classes when it is installed (and works
without it: its own fallback): 1.1 of the 1.5 s `import xgboost.tracker` takes here, paid by
the tracker and every worker, which use the core API only."""
TRACKER = StepDef(
    Step.TRACKER,
    "steps.train.tracker",
    # The train spec's timeout_seconds bounds the tracker's waits as the workers'.
    inputs=(WORKERS, PORT, TRAIN_SPEC),
    options=(HOST, MAX_SECONDS),
    daemon=True,
    kept_out=XGBOOST_ONLY,
)

RANK = Input("rank", int, "this worker's shard and rank")
TRACKER_HOST = Input("tracker-host", str, "the tracker's address")
TRACKER_PORT = Input("tracker-port", int, "the tracker's port")
TRAIN = StepDef(
    Step.TRAIN,
    "steps.train.worker",
    template="train-worker",
    inputs=(DATASET_URI, TRAIN_SPEC, RANK, TRACKER_HOST, TRACKER_PORT),
    outputs=(Param.MODEL_DIGEST, Param.BEST_ITERATION, Param.VALID_AUC),
    resources=Resources(cpu_from_spec=True),
    attested=True,
    kept_out=XGBOOST_ONLY,
)

WORKER_OUTPUTS = Input("worker-outputs", str, "JSON list of the workers' output parameters")
MODEL_CHECK = StepDef(
    Step.MODEL_CHECK,
    "steps.train.model_check",
    inputs=(WORKER_OUTPUTS,),
    outputs=(Param.MODEL_DIGEST, Param.BEST_ITERATION, Param.VALID_AUC),
    artifacts=(Artifact.MODEL, Artifact.LEARNING_CURVE),
)

QUANTIZE_SPEC = spec_input(QuantizeSpec)
QUANTIZE = StepDef(
    Step.QUANTIZE,
    "steps.quantize.step",
    inputs=(DATASET_URI, QUANTIZE_SPEC),
    input_artifacts=(Artifact.MODEL,),
    outputs=(Param.ONNX_DIGEST, Param.PARITY_MAX_DIFF, Param.ENCODING),
    artifacts=(Artifact.ONNX, Artifact.QUANTIZE_REPORT, Artifact.QUANTIZE_REPORT_HTML),
    attested=True,
)

EVALUATE_SPEC = spec_input(EvaluateSpec)
EVALUATE = StepDef(
    Step.EVALUATE,
    "steps.evaluate.step",
    inputs=(DATASET_URI, MODEL_NAME, EVALUATE_SPEC),
    input_artifacts=(Artifact.ONNX, Artifact.MODEL),
    outputs=(Param.AUC, Param.WORST_SLICE, Param.WORST_SLICE_AUC, Param.ECE, Param.GATE),
    artifacts=(Artifact.EVALUATION, Artifact.EVALUATION_REPORT),
    attested=True,
)

MODEL_CARD_SPEC = spec_input(ModelCardSpec)
MODEL_CARD = StepDef(
    Step.MODEL_CARD,
    "steps.model_card.step",
    inputs=(MODEL_NAME, DATA_SPEC, MODEL_CARD_SPEC),
    input_artifacts=(
        Artifact.AUDIT_RESULT,
        Artifact.PROVENANCE,
        Artifact.MODEL,
        Artifact.QUANTIZE_REPORT,
        Artifact.EVALUATION,
    ),
    artifacts=(Artifact.MODEL_CARD, Artifact.MODEL_CARD_JSON),
    attested=True,
)

DEPLOY_SPEC = spec_input(DeploySpec)
DEPLOY = StepDef(
    Step.DEPLOY,
    "steps.deploy.step",
    inputs=(ONNX_DIGEST, DATASET_URI, MODEL_NAME, DEPLOY_SPEC),
    input_artifacts=(Artifact.ONNX, Artifact.MODEL, Artifact.EVALUATION),
    outputs=(Param.DEPLOYED_DIGEST, Param.ENDPOINT),
    artifacts=(Artifact.ROLLOUT, Artifact.ROLLOUT_REPORT),
    resources=Resources(identity=Identity.DEPLOY),
    attested=True,
)

WINDOW_URI = Input(
    "window-uri", str, "the data to judge: a file, or a prefix ending in '/'", Origin.WORKFLOW
)
DRIFT_SPEC = spec_input(DriftSpec)
DRIFT = StepDef(
    Step.DRIFT,
    "steps.drift.step",
    inputs=(WINDOW_URI, DATA_SPEC, DRIFT_SPEC, MODEL_NAME),
    outputs=(Param.RETRAIN, Param.REASON, Param.DRIFT_SCORE),
    artifacts=(Artifact.DRIFT_RESULT, Artifact.DRIFT_REPORT),
)

# The exit handler values the summary's inputs from Argo's variables: it has no caller.
WORKFLOW_NAME = Input("workflow-name", str, "the run's workflow name")
WORKFLOW_STATUS = Input("workflow-status", str, "how the run ended (Argo's workflow.status)")
WORKFLOW_FAILURES = Input(
    "workflow-failures", str, "Argo's JSON list of failed nodes", default="null"
)
RUN_PREFIX = Input("run-prefix", str, "the run's key prefix, e.g. NAME/")
SUMMARY_SPEC = spec_input(SummarySpec, Origin.TASK)
SUMMARY = StepDef(
    Step.SUMMARY,
    "steps.summary.step",
    inputs=(
        WORKFLOW_NAME,
        WORKFLOW_STATUS,
        WORKFLOW_FAILURES,
        RUN_PREFIX,
        SUMMARY_SPEC,
    ),
    outputs=(Param.NOTIFIED,),
    artifacts=(Artifact.RUN_SUMMARY, Artifact.RUN_SUMMARY_REPORT),
    # Listing a run's folder and rendering one page needs little; the steps' size is wasteful.
    resources=Resources(cpu="250m", memory="256Mi"),
)

ACTION = Input("action", str, "show or verify", positional=True, choices=("show", "verify"))
RUN = Input("run", str, "workflow name", required=False)
DIGEST = Input("digest", str, "sha256 of an artifact", required=False)
PUBLIC_KEY = Input("public-key", Path, "Ed25519 PEM: signatures are required", required=False)
CHAIN = StepDef(
    Step.CHAIN,
    "steps.provenance.chain",
    options=(ACTION, RUN, DIGEST, PUBLIC_KEY),
)

DATA_FILE = Input("data", str, "a local CSV or Parquet file")
LABEL = Input("label", str, "the binary label column")
POSITIVE_CLASS = Input("positive-class", str, "the label value that is positive", required=False)
INIT_OUT = Input("out", Path, "folder for the three files (config/<model>)", required=False)
FORCE = Input("force", bool, "replace existing files", flag=True)
COMMAND = Input("command", str, "named in the files' comments", default="mlpipe init")
INIT = StepDef(
    Step.INIT,
    "steps.data.init",
    options=(DATA_FILE, LABEL, POSITIVE_CLASS, INIT_OUT, FORCE, COMMAND),
)

WINDOWS = Input("windows", Path, "the days' files, in order", positional=True, repeated=True)
ORACLE_ROUNDS = Input("rounds", int, "boosting rounds")
MAX_DEPTH = Input("max-depth", int, "tree depth, as training's")
ETA = Input("eta", float, "learning rate, as training's")
ORACLE = StepDef(
    Step.ORACLE, "steps.train.oracle", options=(WINDOWS, DATA_SPEC, ORACLE_ROUNDS, MAX_DEPTH, ETA)
)

STEPS: dict[str, StepDef] = {
    value.name.value: value for value in list(globals().values()) if isinstance(value, StepDef)
}
"""Every step declared above, by its command name: `python -m steps` knows exactly these."""
