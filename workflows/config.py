"""The pipeline config a user edits (config/*.yaml), loaded once at the CLI edge.

Step settings are the step's own spec models (steps/specs.py), so a value is validated here
with exactly the rules the step applies. Environment overrides (documented in README.md):
MLPIPE_DATA_URI, MLPIPE_S3_ENDPOINT, MLPIPE_S3_BUCKET, MLPIPE_NAMESPACE.
"""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps.specs import (
    AuditSpec,
    DataSpec,
    DeploySpec,
    EvaluateSpec,
    QuantizeSpec,
    TrainSpec,
)

DEFAULT_CONFIG = Path("config/local.yaml")

ENV_OVERRIDES: dict[str, str] = {
    "MLPIPE_DATA_URI": "data.uri",
    "MLPIPE_S3_ENDPOINT": "storage.endpoint",
    "MLPIPE_S3_BUCKET": "storage.bucket",
    "MLPIPE_NAMESPACE": "argo.namespace",
}


class ConfigError(Exception):
    """A config that cannot be used: names the file, the key and what was expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(DataSpec):
    """Where the training data is, plus what its columns mean."""

    uri: str = "data/sample.parquet"

    def spec(self) -> DataSpec:
        return DataSpec.model_validate(self.model_dump(exclude={"uri"}))


class AuditConfig(Section):
    suite_file: Path = Path("expectations/default.json")
    min_rows: int = Field(default=100, ge=1)
    max_rows: int | None = Field(default=None, ge=1)


class StorageConfig(Section):
    """The S3 API every artifact goes through.

    `embedded`: `mlpipe run` starts SeaweedFS on loopback with data under `data_dir`.
    `external`: an S3 endpoint given here (or by a Secret on a cluster).
    """

    mode: Literal["embedded", "external"] = "embedded"
    endpoint: str | None = None
    bucket: str = Field(default="mlpipe", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    key_format: str = "{{workflow.name}}/{{pod.name}}"
    data_dir: Path = Path(".mlpipe/s3")
    credentials_secret: str = "mlpipe-s3"


class ArtifactRepositoryRef(Section):
    config_map: str = "artifact-repositories"
    key: str = "mlpipe"


class ArgoConfig(Section):
    """How the manifests address a cluster; the local engine accepts but does not need these."""

    namespace: str = "mlpipe"
    server: str | None = None
    steps_image: str = "ghcr.io/mlpipe/steps:0.1.0"
    serving_image: str = "ghcr.io/mlpipe/serving:0.1.0"
    service_account: str = "mlpipe-steps"
    artifact_repository: ArtifactRepositoryRef = ArtifactRepositoryRef()
    active_deadline_seconds: int = Field(default=4 * 3600, ge=60)
    step_cpu: str = "1"
    step_memory: str = "2Gi"


class ScheduleConfig(Section):
    schedules: list[str] = Field(default_factory=lambda: ["0 3 * * *"], min_length=1)
    timezone: str = "UTC"
    suspend: bool = False


class EngineConfig(Section):
    parallelism: int = Field(default=2, ge=1)
    workdir: Path = Path(".mlpipe/runs")


class PipelineConfig(Section):
    model_name: str = Field(default="churn", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    data: DataConfig = DataConfig()
    audit: AuditConfig = AuditConfig()
    train: TrainSpec = TrainSpec()
    quantize: QuantizeSpec = QuantizeSpec()
    evaluate: EvaluateSpec = EvaluateSpec()
    deploy: DeploySpec = DeploySpec()
    storage: StorageConfig = StorageConfig()
    argo: ArgoConfig = ArgoConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    engine: EngineConfig = EngineConfig()


class LoadedConfig(BaseModel):
    """A validated config and the file it came from (relative paths resolve against it)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    pipeline: PipelineConfig

    def audit_spec(self) -> AuditSpec:
        suite_path = self.path.parent / self.pipeline.audit.suite_file
        try:
            suite = json.loads(suite_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(
                f"{self.path}: key 'audit.suite_file': cannot read a GX suite JSON "
                f"from {suite_path}: {error}"
            ) from error
        return AuditSpec(
            suite=suite,
            min_rows=self.pipeline.audit.min_rows,
            max_rows=self.pipeline.audit.max_rows,
        )


def load_config(
    path: Path,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read, override (env, then `--set key=value`) and validate a config file."""
    environ = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for variable, key in ENV_OVERRIDES.items():
        if variable in environ:
            _set_dotted(raw, key, environ[variable], path)
    for assignment in overrides:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.rounds=50")
        _set_dotted(raw, key, yaml.safe_load(value) if value else "", path)
    try:
        pipeline = PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(path, error)) from error
    return LoadedConfig(path=path, pipeline=pipeline)


def _set_dotted(raw: dict[str, Any], key: str, value: object, path: Path) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: key '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _describe(path: Path, error: ValidationError) -> str:
    lines = []
    for issue in error.errors():
        key = ".".join(str(part) for part in issue["loc"])
        expected = issue["msg"]
        if issue["type"] == "extra_forbidden":
            expected = "unknown key (check the spelling; see config/local.yaml for all keys)"
        lines.append(f"{path}: key '{key}': {expected} (got {issue.get('input')!r})")
    return "\n".join(lines)
