"""Every name the steps and the workflow definitions share, defined once.

The Hera templates (workflows/) and the step CLIs (steps/) both import these, so a
parameter or artifact renamed here is renamed in the manifest and in the step at once.
This module must stay import-light: workflows/ imports it at compile time.
"""

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    """`python -m steps <name>`: one entry per command a workflow container runs."""

    SYNTH = "synth"
    AUDIT = "audit"
    PROVENANCE = "provenance"
    TRACKER = "tracker"
    TRAIN = "train"
    MODEL_CHECK = "model-check"
    QUANTIZE = "quantize"
    EVALUATE = "evaluate"
    MODEL_CARD = "model-card"
    DEPLOY = "deploy"
    DRIFT = "drift"
    SUMMARY = "summary"
    CHAIN = "chain"
    """Not a pipeline step: `mlpipe provenance show|verify` runs it to read the chain."""
    INIT = "init"
    """Not a pipeline step: `mlpipe init` and `mlpipe run --label` run it to infer the data's
    config, suite and slices."""
    ORACLE = "oracle"
    """Not a pipeline step: `mlpipe schedule simulate` runs it to score a model retrained on
    every day."""


class Param(StrEnum):
    """Output parameters: a step writes each to `<out>/parameters/<name>` (one text value)."""

    PASSED = "passed"
    ROWS = "rows"
    CRITICAL_FAILURES = "critical_failures"
    WARNINGS = "warnings"
    DATASET_DIGEST = "dataset_digest"
    DATASET_URI = "dataset_uri"
    MODEL_DIGEST = "model_digest"
    BEST_ITERATION = "best_iteration"
    VALID_AUC = "valid_auc"
    ONNX_DIGEST = "onnx_digest"
    PARITY_MAX_DIFF = "parity_max_diff"
    ENCODING = "encoding"
    AUC = "auc"
    WORST_SLICE = "worst_slice"
    WORST_SLICE_AUC = "worst_slice_auc"
    ECE = "ece"
    GATE = "gate"
    DEPLOYED_DIGEST = "deployed_digest"
    ENDPOINT = "endpoint"
    RETRAIN = "retrain"
    REASON = "reason"
    DRIFT_SCORE = "drift_score"
    NOTIFIED = "notified"


PARAMETERS_DIR = "parameters"
"""Folder under a step's `--out` that holds one file per output parameter."""


@dataclass(frozen=True)
class ArtifactName:
    """An Argo artifact (`name`, letters, digits and dashes) and the file or folder it is."""

    name: str
    filename: str


class Artifact:
    """Output artifacts, each a file or folder directly under the step's `--out` folder."""

    AUDIT_REPORT = ArtifactName("audit-report", "audit-report.html")
    AUDIT_RESULT = ArtifactName("audit-result", "audit-result.json")
    PROVENANCE = ArtifactName("provenance", "provenance.json")
    MODEL = ArtifactName("model", "model")
    LEARNING_CURVE = ArtifactName("learning-curve", "learning-curve.svg")
    ONNX = ArtifactName("onnx", "model.onnx")
    QUANTIZE_REPORT = ArtifactName("quantize-report", "quantize-report.json")
    QUANTIZE_REPORT_HTML = ArtifactName("quantize-report-html", "quantize-report.html")
    EVALUATION = ArtifactName("evaluation", "evaluation.json")
    EVALUATION_REPORT = ArtifactName("evaluation-report", "evaluation-report.html")
    MODEL_CARD = ArtifactName("model-card", "model-card.html")
    MODEL_CARD_JSON = ArtifactName("model-card-json", "model-card.json")
    ROLLOUT = ArtifactName("rollout", "rollout.json")
    ROLLOUT_REPORT = ArtifactName("rollout-report", "rollout-report.html")
    DRIFT_RESULT = ArtifactName("drift-result", "drift-result.json")
    DRIFT_REPORT = ArtifactName("drift-report", "drift-report.html")
    PARAMETERS = ArtifactName("parameters", PARAMETERS_DIR)
    """The `parameters/` folder itself, so a run's key numbers outlive its pods."""
    RUN_SUMMARY = ArtifactName("run-summary", "run-summary.json")
    RUN_SUMMARY_REPORT = ArtifactName("run-summary-report", "run-summary.html")
    ATTESTATION = ArtifactName("attestation", "attestation.intoto.json")
    """The step's in-toto statement (a DSSE envelope), see steps/core/attestation.py."""


class Encoding(StrEnum):
    """The quantize step's candidate ONNX encodings (steps/quantize/encoding.py), by the name its
    report, its `encoding` output parameter and QuantizeSpec.candidates use."""

    BASELINE = "opset1-float32"
    OPSET5 = "opset5-float32"
    OPSET5_FP16_LEAVES = "opset5-fp16-leaves"
    OPSET5_FP16 = "opset5-fp16"


class CategoricalSplits(StrEnum):
    """How a model splits on categorical features (TrainSpec.categorical, recorded in the
    bundle's feature-schema.json). Either way a category enters the model as its index in
    the schema's categories; `codes` splits on that index as a number (`code < t`), `native`
    uses XGBoost's category-set splits (`enable_categorical`)."""

    CODES = "codes"
    NATIVE = "native"


class ModelFile(StrEnum):
    """Files inside the model bundle folder (Artifact.MODEL) and under `models/<digest>/`."""

    BOOSTER = "model.ubj"
    FEATURE_SCHEMA = "feature-schema.json"
    LEARNING_CURVE = "learning-curve.json"
    IMPORTANCE = "importance.json"
    REFERENCE_PROFILE = "reference-profile.json"


MODELS_PREFIX = "models"
"""Content-addressed home of model bundles in the bucket: `models/<model_digest>/`."""


def model_prefix(digest: str) -> str:
    """Where train publishes a bundle; here, not with train, so that the steps that read a
    bundle (audit, drift, model check) do not import xgboost to find it."""
    return f"{MODELS_PREFIX}/{digest}"


class InitFile(StrEnum):
    """What `python -m steps init` writes into its folder (steps/data/init.py)."""

    CONFIG = "config.yaml"
    SUITE = "expectations.json"
    SLICES = "slices.yaml"


class DatasetFile(StrEnum):
    """Layout under `datasets/<digest>/`: train and validation shards (one each per worker),
    the whole test split, and a manifest describing columns and categories."""

    TRAIN_SHARD = "train/part-{index:05d}.parquet"
    VALID_SHARD = "valid/part-{index:05d}.parquet"
    TEST = "test.parquet"
    MANIFEST = "manifest.json"


class Env(StrEnum):
    """Environment variables a step container reads (at its CLI edge only)."""

    S3_ENDPOINT = "MLPIPE_S3_ENDPOINT"
    S3_BUCKET = "MLPIPE_S3_BUCKET"
    S3_REGION = "AWS_REGION"
    ACCESS_KEY = "AWS_ACCESS_KEY_ID"
    SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
    PROGRESS_FILE = "ARGO_PROGRESS_FILE"
    WEBHOOK_URL = "MLPIPE_WEBHOOK_URL"
    # Run details for the step's provenance statement (steps/core/attestation.py); the templates
    # set them from Argo variables, so a step never needs to know which engine runs it.
    WORKFLOW_NAME = "MLPIPE_WORKFLOW_NAME"
    WORKFLOW_UID = "MLPIPE_WORKFLOW_UID"
    ARTIFACT_PREFIX = "MLPIPE_ARTIFACT_PREFIX"
    CODE_VERSION = "MLPIPE_CODE_VERSION"
    CONFIG_DIGEST = "MLPIPE_CONFIG_DIGEST"
    ENGINE = "MLPIPE_ENGINE"
    IMAGE_DIGEST = "MLPIPE_IMAGE_DIGEST"
    SIGNING_KEY = "MLPIPE_SIGNING_KEY"
    POD_IP = "POD_IP"
    """The pod's own IP, from the downward API (`fieldRef: status.podIP`)."""
