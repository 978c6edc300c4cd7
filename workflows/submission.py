"""What `mlpipe submit` sends: the compiled Workflow, with `--param name=value` overrides.

The manifest is the very Workflow `mlpipe compile` writes (a `workflowTemplateRef` to the
installed WorkflowTemplate plus this config's arguments), so a cluster run and a local run
of the same config execute the same YAML.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from steps.core.errors import BadInput
from steps.core.specs import (
    AuditSpec,
    DataSpec,
    DeploySpec,
    EvaluateSpec,
    QuantizeSpec,
    Spec,
    TrainSpec,
)
from workflows.config import ConfigError, LoadedConfig
from workflows.parameters import WorkflowParam
from workflows.pipeline import build_workflow, worker_ranks

SPECS: Mapping[str, type[Spec]] = {
    WorkflowParam.DATA_SPEC: DataSpec,
    WorkflowParam.AUDIT_SPEC: AuditSpec,
    WorkflowParam.TRAIN_SPEC: TrainSpec,
    WorkflowParam.QUANTIZE_SPEC: QuantizeSpec,
    WorkflowParam.EVALUATE_SPEC: EvaluateSpec,
    WorkflowParam.DEPLOY_SPEC: DeploySpec,
}
"""Spec parameters are checked here with the step's own model, not minutes later in a pod."""


def submission_manifest(config: LoadedConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The Workflow for this config; each override replaces one workflow parameter's value."""
    data_uri = config.pipeline.data.uri
    if not data_uri.startswith("s3://"):
        raise ConfigError(
            f"{config.path}: key 'data.uri': {data_uri!r} is a local path; a cluster run reads "
            "its data from the bucket, e.g. s3://<bucket>/incoming/data.parquet"
        )
    manifest: dict[str, Any] = build_workflow(config).to_dict()
    parameters = manifest["spec"]["arguments"]["parameters"]
    by_name = {parameter["name"]: parameter for parameter in parameters}
    for assignment in overrides:
        name, sep, value = assignment.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {assignment!r}: expected name=value, e.g. workers=4")
        if name not in by_name:
            raise ConfigError(
                f"--param {name!r}: not a parameter of the workflow; known: {sorted(by_name)}"
            )
        if name in SPECS:
            try:
                SPECS[name].from_json_arg(value)
            except BadInput as error:
                raise ConfigError(f"--param {name}: {error}") from error
        by_name[name]["value"] = value
    _check_workers(by_name)
    return manifest


def _check_workers(parameters: Mapping[str, dict[str, Any]]) -> None:
    """The fan-out, the worker count and the training spec must agree, or the collective
    never forms."""
    train = TrainSpec.from_json_arg(parameters[WorkflowParam.TRAIN_SPEC]["value"])
    workers = parameters[WorkflowParam.WORKERS]["value"]
    ranks = parameters[WorkflowParam.WORKER_RANKS]["value"]
    if str(train.workers) != str(workers) or ranks != worker_ranks(train.workers):
        raise ConfigError(
            f"--param workers={workers} / worker-ranks={ranks} disagree with train-spec "
            f"workers={train.workers}; use --set train.workers={workers}, which sets all three"
        )
