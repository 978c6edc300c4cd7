"""The pipeline config a user edits (config/*.yaml), loaded once at the CLI edge.

Step settings are the step's own spec models (steps/core/specs.py), so a value is validated here
with exactly the rules the step applies. Environment overrides (documented in README.md):
MLPIPE_DATA_URI, MLPIPE_S3_ENDPOINT, MLPIPE_S3_BUCKET, MLPIPE_NAMESPACE, MLPIPE_ARGO_SERVER.
The Argo server token is read at the CLI edge (workflows/argo_client.py): env ARGO_TOKEN, else
`argo.token_file`, else `argo.token`.
"""

import json
import os
import typing
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from steps.core.specs import (
    AuditBounds,
    AuditSpec,
    DataSpec,
    DeploySpec,
    DriftSpec,
    EvaluateSpec,
    KubeServingSpec,
    QuantizeSpec,
    ServingSettings,
    TrainSpec,
)
from workflows.engine.filesystem import FilesystemMode

DEFAULT_CONFIG = Path("config/local.yaml")

ENV_OVERRIDES: dict[str, str] = {
    "MLPIPE_DATA_URI": "data.uri",
    "MLPIPE_S3_ENDPOINT": "storage.endpoint",
    "MLPIPE_S3_BUCKET": "storage.bucket",
    "MLPIPE_NAMESPACE": "argo.namespace",
    "MLPIPE_ARGO_SERVER": "argo.server",
}


PATH_KEYS: tuple[str, ...] = (
    "data.uri",
    "drift.window_uri",
    "audit.suite_file",
    "evaluate.slices_file",
    "provenance.signing_key",
    "storage.data_dir",
    "argo.token_file",
    "argo.ca_file",
    "engine.workdir",
    "deploy.state_dir",
)
"""Keys holding local paths. Each is made absolute once, in `load_config`: a value written in
a config file against that file's folder; a value from `--set` or the environment against the
working directory; a default against the config's folder for the files that come with a
config (COMPANION_KEYS), else the working directory. A URI (`s3://...`) is left as it is, and
so is a `~/...` deploy.state_dir, which the deploy step expands on the machine it runs on."""

COMPANION_KEYS = ("audit.suite_file", "evaluate.slices_file")

SLICES_FILE_KEYS = frozenset({"slices", "min_slice_rows", "checks"})
"""What evaluate.slices_file may set (EvaluateSpec fields about the data, not the gate)."""


class ConfigError(Exception):
    """A config that cannot be used: names the file, the key and what was expected."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(DataSpec):
    """Where the training data is, plus what its columns mean."""

    uri: str = "data/sample.parquet"

    def spec(self) -> DataSpec:
        return DataSpec.model_validate(self.model_dump(exclude={"uri"}))


class AuditConfig(AuditBounds):
    """The expectation suite file plus the built-in checks' bounds."""

    suite_file: Path | None = Field(
        default=Path("expectations/default.json"),
        description="GX suite JSON, relative to this file; null: inferred from the data",
    )


class EvaluateConfig(EvaluateSpec):
    """The evaluation's settings, plus a YAML file of slices and behavioural checks."""

    slices_file: Path | None = Field(
        default=None,
        description="relative to this file; keys: " + ", ".join(sorted(SLICES_FILE_KEYS)),
    )


class ProvenanceConfig(Section):
    """Provenance statements, their signing, and memoization of the training group.

    Signing: locally `signing_key` is an Ed25519 private key PEM (relative to this file),
    served to the steps as the Secret `signing_secret`; on a cluster that Secret (key
    `private-key`) must exist. `mlpipe provenance verify` then requires valid signatures.
    """

    memoize: bool = True
    memoize_max_age: str = Field(default="168h", pattern=r"^(\d+(ns|us|ms|s|m|h))+$")
    signing: bool = False
    signing_key: Path | None = None
    signing_secret: str = "mlpipe-signing"
    code_version: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9][-a-zA-Z0-9]*$",
        description="default: derived from argo.steps_image; `mlpipe run` uses git",
    )


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
    server: str | None = Field(
        default=None, pattern=r"^https?://[^/\s@]+(/|$)", description="Argo server (and UI) URL"
    )
    token: SecretStr | None = Field(default=None, description="prefer ARGO_TOKEN or token_file")
    token_file: Path | None = Field(default=None, description="relative to this file")
    verify_tls: bool = True
    ca_file: Path | None = Field(default=None, description="PEM bundle; relative to this file")
    request_timeout_seconds: float = Field(default=30, gt=0)
    steps_image: str = "ghcr.io/mlpipe/steps:0.1.0"
    serving_image: str = "ghcr.io/mlpipe/serving:0.1.0"
    service_account: str = "mlpipe-steps"
    artifact_repository: ArtifactRepositoryRef = ArtifactRepositoryRef()
    active_deadline_seconds: int = Field(default=4 * 3600, ge=60)
    step_cpu: str = "1"
    step_memory: str = "2Gi"
    step_deadline_seconds: int = Field(default=3600, ge=60, description="per template")
    deploy_service_account: str = "mlpipe-deploy"
    submit_service_account: str = "mlpipe-submitter"
    webhook_secret: str | None = Field(
        default=None, description="Secret whose key `url` is the run-summary webhook"
    )
    memoize_cache: str = "mlpipe-memoize"
    controller_service_account: str = Field(
        default="argo:argo",
        pattern=r"^[a-z0-9-]+:[a-z0-9-]+$",
        description="namespace:name of the Argo controller, which writes the memoize cache",
    )

    @field_validator("steps_image", "serving_image")
    @classmethod
    def _pinned(cls, image: str) -> str:
        """A tag or a digest, never the implicit `latest` that changes under a running cron."""
        name = image.split("@", 1)[0]
        if "@sha256:" not in image and ":" not in name.rsplit("/", 1)[-1]:
            raise ValueError(f"image {image!r} needs a tag or an @sha256: digest")
        return image

    @field_validator("service_account", "deploy_service_account", "submit_service_account")
    @classmethod
    def _not_default(cls, name: str) -> str:
        if name == "default":
            raise ValueError("the namespace's `default` ServiceAccount is shared; name your own")
        return name

    @model_validator(mode="after")
    def _deadlines(self) -> Self:
        if self.step_deadline_seconds > self.active_deadline_seconds:
            raise ValueError(
                f"step_deadline_seconds ({self.step_deadline_seconds}) exceeds "
                f"active_deadline_seconds ({self.active_deadline_seconds})"
            )
        return self


class ScheduleConfig(Section):
    """The retraining CronWorkflow (workflows/cron.py); it never runs two at once."""

    schedules: list[str] = Field(default_factory=lambda: ["0 3 * * *"], min_length=1)
    timezone: str = "UTC"
    suspend: bool = False
    starting_deadline_seconds: int = Field(default=600, ge=0)
    successful_jobs_history_limit: int = Field(default=5, ge=0)
    failed_jobs_history_limit: int = Field(default=5, ge=0)


class DriftConfig(DriftSpec):
    """The drift check's thresholds, plus which data it looks at."""

    window_uri: str | None = Field(
        default=None,
        description="file, or prefix ending in '/' (its last key in sort order); "
        "default: data.uri, the data a retraining would train on",
    )

    def spec(self) -> DriftSpec:
        return DriftSpec.model_validate(self.model_dump(exclude={"window_uri"}))


class EngineConfig(Section):
    parallelism: int = Field(default=2, ge=1)
    workdir: Path = Path(".mlpipe/runs")
    filesystem: FilesystemMode = Field(
        default=FilesystemMode.AUTO,
        description="each task's own paths: isolated (mount namespaces), remap, or auto",
    )


class PipelineConfig(Section):
    model_name: str = Field(default="churn", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    data: DataConfig = DataConfig()
    audit: AuditConfig = AuditConfig()
    provenance: ProvenanceConfig = ProvenanceConfig()
    train: TrainSpec = TrainSpec()
    quantize: QuantizeSpec = QuantizeSpec()
    evaluate: EvaluateConfig = EvaluateConfig()
    deploy: DeploySpec = DeploySpec()
    storage: StorageConfig = StorageConfig()
    argo: ArgoConfig = ArgoConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    drift: DriftConfig = DriftConfig()
    engine: EngineConfig = EngineConfig()
    serving: ServingSettings | None = Field(
        default=None, description="model servers on Kubernetes; unset: the local backend"
    )

    @field_validator("deploy")
    @classmethod
    def _serving_from_its_section(cls, deploy: DeploySpec) -> DeploySpec:
        if deploy.kubernetes is not None:
            raise ValueError("derived from the config: set the `serving:` section instead")
        return deploy


class LoadedConfig(BaseModel):
    """A validated config and the file it came from (relative paths resolve against it)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    pipeline: PipelineConfig

    def deploy_spec(self) -> DeploySpec:
        """The deploy step's spec; with a `serving:` section, the kubernetes backend's
        settings joined with the namespace, serving image and storage they run with."""
        pipeline = self.pipeline
        if pipeline.serving is None:
            return pipeline.deploy
        try:
            kubernetes = KubeServingSpec(
                **pipeline.serving.model_dump(),
                namespace=pipeline.argo.namespace,
                image=pipeline.argo.serving_image,
                bucket=pipeline.storage.bucket,
                region=pipeline.storage.region,
                credentials_secret=pipeline.storage.credentials_secret,
            )
        except ValidationError as error:
            raise ConfigError(_describe(self.path, error)) from error
        return pipeline.deploy.model_copy(update={"kubernetes": kubernetes})

    def evaluate_spec(self) -> EvaluateSpec:
        """The evaluate section joined with its slices file; errors name the file and key."""
        section = self.pipeline.evaluate
        values = section.model_dump(exclude={"slices_file"})
        if section.slices_file is None:
            return EvaluateSpec.model_validate(values)
        path = section.slices_file
        if not path.is_file():
            raise ConfigError(
                f"{self.path}: key 'evaluate.slices_file': cannot read {path}: no such file"
            )
        raw = _read_yaml(path, "the slices file")
        if not isinstance(raw, dict) or not raw.keys() <= SLICES_FILE_KEYS:
            found = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
            raise ConfigError(
                f"{path}: expected a mapping with keys {', '.join(sorted(SLICES_FILE_KEYS))}; "
                f"got {found}"
            )
        # A value other than the default, not `model_fields_set`: configs are re-validated
        # from a full dump (with_overrides), which marks every key as set.
        defaults = EvaluateSpec()
        twice = sorted(k for k in raw if getattr(section, k) != getattr(defaults, k))
        if twice:
            raise ConfigError(
                f"{self.path}: key 'evaluate.{twice[0]}' is also set in {path}; keep one"
            )
        try:
            return EvaluateSpec.model_validate({**values, **raw})
        except ValidationError as error:
            raise ConfigError(_describe(path, error)) from error

    def audit_spec(self) -> AuditSpec:
        suite_path = self.pipeline.audit.suite_file
        bounds = self.pipeline.audit.model_dump(exclude={"suite_file"})
        if suite_path is None:
            return AuditSpec(suite=None, **bounds)
        try:
            suite = json.loads(suite_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(
                f"{self.path}: key 'audit.suite_file': cannot read a GX suite JSON "
                f"from {suite_path}: {error}"
            ) from error
        return AuditSpec(suite=suite, **bounds)


def load_config(
    path: Path,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    *,
    inferred: Path | None = None,
    allow_missing: bool = False,
) -> LoadedConfig:
    """Read, override (env, then `--set key=value`) and validate a config file.

    `inferred` is a config written by `mlpipe init` for the data (workflows/inference.py):
    its keys replace the file's before the environment and `--set` apply, its paths relative
    to its own folder. With `allow_missing`, an absent file is an empty one: the defaults.
    """
    environ = os.environ if environ is None else environ
    path = path.absolute()
    raw = {} if allow_missing and not path.exists() else _read_yaml(path, "the config file")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    _absolute_paths(raw, path.parent, PATH_KEYS)
    cwd = Path.cwd()
    sources: dict[str, str] = {}
    """key -> where its value came from, when not from the file (errors blame that)."""
    if inferred is not None:
        layer = _read_yaml(inferred, "the inferred config")
        if not isinstance(layer, dict):
            raise ConfigError(f"{inferred}: expected a mapping of sections at the top level")
        _absolute_paths(layer, inferred.parent, PATH_KEYS)
        for key, value in dotted_leaves(layer).items():
            sources[key] = str(inferred)
            _set_dotted(raw, key, value, sources[key])
    for variable, key in ENV_OVERRIDES.items():
        if variable in environ:
            sources[key] = f"environment variable {variable}"
            _set_dotted(raw, key, _absolute(key, environ[variable], cwd), sources[key])
    for assignment in overrides:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.rounds=50")
        sources[key] = f"--set {key}"
        parsed = set_value(key, value)
        _set_dotted(raw, key, _absolute(key, parsed, cwd), sources[key])
    try:
        pipeline = PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(path, error, sources)) from error
    # What is still relative came from the code's defaults.
    resolved = _absolute_paths(pipeline.model_dump(), path.parent, COMPANION_KEYS)
    resolved = _absolute_paths(resolved, cwd, PATH_KEYS)
    return LoadedConfig(path=path, pipeline=PipelineConfig.model_validate(resolved))


def _read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content; every way it can be unreadable is a ConfigError naming it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(error)}") from error


def set_value(key: str, text: str) -> object:
    """The value of `--set key=text`: YAML-typed (numbers, lists, null), except that a key
    holding text takes the text as typed. YAML 1.1 would turn `yes` into True and `>50K`
    is not YAML at all, and both are ordinary label values."""
    if text == "":
        return ""
    takes_text = str in _field_types(key)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as error:
        if takes_text:
            return text
        raise ConfigError(
            f"--set {key}={text}: not a YAML value ({_one_line(error)}); "
            f"quote it: --set '{key}=\"{text}\"'"
        ) from error
    if takes_text and isinstance(parsed, int | float | date):
        types = _field_types(key)
        # A number or a bool only where the key takes one, and a bool only spelled true/false.
        if type(parsed) in types and (not isinstance(parsed, bool) or text in ("true", "false")):
            return parsed
        return text
    return parsed


def _field_types(key: str) -> set[type]:
    """The types a dotted config key accepts (empty for an unknown key)."""
    model: Any = PipelineConfig
    annotation: Any = None
    for part in key.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return set()
        annotation = fields[part].annotation
        model = next((a for a in _flatten(annotation) if hasattr(a, "model_fields")), None)
    return {a for a in _flatten(annotation) if isinstance(a, type)}


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [leaf for arg in args for leaf in _flatten(arg)] if args else [annotation]


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _absolute_paths(raw: dict[str, Any], base: Path, keys: Sequence[str]) -> dict[str, Any]:
    """Make every one of `keys` present in `raw` absolute against `base` (in place)."""
    for key in keys:
        *sections, name = key.split(".")
        node: Any = raw
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if isinstance(node, dict) and name in node:
            node[name] = _absolute(key, node[name], base)
    return raw


def _absolute(key: str, value: object, base: Path) -> object:
    """A local path value made absolute against `base`; anything else unchanged."""
    if key not in PATH_KEYS or not isinstance(value, str | Path) or not str(value):
        return value
    text = str(value)
    if "://" in text or (key == "deploy.state_dir" and text.startswith("~")):
        return value
    return os.path.normpath(base / Path(text).expanduser())


def dotted_leaves(raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every non-mapping value of a nested mapping, by its dotted key."""
    leaves: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            leaves.update(dotted_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def _set_dotted(raw: dict[str, Any], key: str, value: object, source: str) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: key '{key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _describe(path: Path, error: ValidationError, sources: Mapping[str, str] = {}) -> str:
    """One line per problem, naming where the value came from: the file, or the `--set` or
    environment variable that overrode it."""
    lines = []
    for issue in error.errors():
        key = ".".join(str(part) for part in issue["loc"])
        expected = issue["msg"]
        if issue["type"] == "extra_forbidden":
            expected = "unknown key (check the spelling; see config/local.yaml for all keys)"
        # A token typed into the wrong place must not end up in a CI log.
        got = "<redacted>" if "token" in key else repr(issue.get("input"))
        origin = next(
            (sources[k] for k in sorted(sources, key=len, reverse=True) if _within(key, k)),
            str(path),
        )
        lines.append(f"{origin}: key '{key}': {expected} (got {got})")
    return "\n".join(lines)


def _within(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")
