"""Workflow-level parameter names: the knobs of a submitted run, defined once.

Each is also the `--flag` of the step CLI that receives it and the template input of the
same name, so one spelling travels from `mlpipe submit --param` to the step's argparse.
"""

from enum import StrEnum


class WorkflowParam(StrEnum):
    DATA_URI = "data-uri"
    DATA_SPEC = "data-spec"
    AUDIT_SPEC = "audit-spec"
    TRAIN_SPEC = "train-spec"
    QUANTIZE_SPEC = "quantize-spec"
    EVALUATE_SPEC = "evaluate-spec"
    DEPLOY_SPEC = "deploy-spec"
    MODEL_NAME = "model-name"
    WORKERS = "workers"
    WORKER_RANKS = "worker-ranks"
    """The workers' ranks as a JSON list: the training fan-out runs `withParam` over it, as
    Argo aggregates worker outputs only for withItems/withParam (validate.go)."""
    CONFIG_DIGEST = "config-digest"
    """SHA-256 of the run's step specs: part of the memoization key and of every statement."""
    CODE_VERSION = "code-version"
    """The steps' code: image reference on a cluster, package version + git commit locally."""
    WINDOW_URI = "window-uri"
    DRIFT_SPEC = "drift-spec"


class StepInput(StrEnum):
    """Template inputs that are not workflow parameters but outputs of earlier tasks."""

    DATASET_URI = "dataset-uri"
    SHARDS = "shards"
    RANK = "rank"
    TRACKER_HOST = "tracker-host"
    TRACKER_PORT = "tracker-port"
    PORT = "port"
    WORKER_OUTPUTS = "worker-outputs"
    ONNX_DIGEST = "onnx-digest"
    DATASET_DIGEST = "dataset-digest"
    # The onExit summary's inputs, valued from Argo's exit-handler variables.
    WORKFLOW_NAME = "workflow-name"
    WORKFLOW_STATUS = "workflow-status"
    WORKFLOW_FAILURES = "workflow-failures"
    RUN_PREFIX = "run-prefix"
    SUMMARY_SPEC = "summary-spec"
