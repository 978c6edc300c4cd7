"""The subset of Argo's schema the local engine runs, as strict typed models.

Each model lists exactly the fields the engine implements (`extra="forbid"`): an unknown
field anywhere in a manifest fails validation with its full path, before anything runs.
Fields accepted without local effect, and fields refused with a reason, come from the one
table in `fields.py`. Values keep Argo's spelling (camelCase aliases) and its loose typing:
parameter values may be written as numbers or booleans and become strings, as in Argo.
"""

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from workflows.engine.errors import ManifestError, UnsupportedField
from workflows.engine.fields import NO_LOCAL_EFFECT, REFUSED

REFUSED_FIELD = "refused_field"


def argo_string(value: object) -> object:
    """Argo's AnyString: YAML numbers and booleans are parameter values too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


AnyString = Annotated[str, BeforeValidator(argo_string)]
IntOrString = int | str


class Spec(BaseModel):
    """Base of every manifest object: strict, immutable, camelCase like the YAML."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )
    KIND: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _cluster_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind = cls.KIND or cls.__name__
        refused = REFUSED.get(kind, {})
        for key in data:
            if key in refused:
                raise PydanticCustomError(
                    REFUSED_FIELD, "{reason}", {"field": key, "reason": refused[key]}
                )
        ignored = NO_LOCAL_EFFECT.get(kind, {})
        return {key: value for key, value in data.items() if key not in ignored}


class EmptyObject(Spec):
    """`{}`: a marker such as `archive: {none: {}}`."""


class Metadata(Spec):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None


class WorkflowParameter(Spec):
    name: str
    value: AnyString | None = None
    enum: tuple[AnyString, ...] | None = None


class WorkflowArguments(Spec):
    parameters: tuple[WorkflowParameter, ...] = ()


class S3Location(Spec):
    """An object in the artifact repository's bucket, by key (other buckets are refused)."""

    key: str


class TarArchive(Spec):
    compression_level: int | None = None


class Archive(Spec):
    none: EmptyObject | None = None
    tar: TarArchive | None = None


class ArgumentParameter(Spec):
    name: str
    value: AnyString


class ArgumentArtifact(Spec):
    name: str
    from_: str | None = Field(default=None, alias="from")
    s3: S3Location | None = None


class Arguments(Spec):
    parameters: tuple[ArgumentParameter, ...] = ()
    artifacts: tuple[ArgumentArtifact, ...] = ()


class InputParameter(Spec):
    name: str
    value: AnyString | None = None
    default: AnyString | None = None
    enum: tuple[AnyString, ...] | None = None


class InputArtifact(Spec):
    name: str
    path: str | None = None
    optional: bool = False
    s3: S3Location | None = None
    archive: Archive | None = None


class Inputs(Spec):
    parameters: tuple[InputParameter, ...] = ()
    artifacts: tuple[InputArtifact, ...] = ()


class OutputValueFrom(Spec):
    path: str | None = None
    parameter: str | None = None
    default: AnyString | None = None


class OutputParameter(Spec):
    name: str
    value_from: OutputValueFrom


class OutputArtifact(Spec):
    name: str
    path: str | None = None
    from_: str | None = Field(default=None, alias="from")
    archive: Archive | None = None
    optional: bool = False


class Outputs(Spec):
    parameters: tuple[OutputParameter, ...] = ()
    artifacts: tuple[OutputArtifact, ...] = ()


class SecretKeySelector(Spec):
    name: str
    key: str
    optional: bool = False
    """As in Kubernetes: a missing secret or key leaves the variable unset."""


class EnvVarSource(Spec):
    secret_key_ref: SecretKeySelector


class EnvVar(Spec):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class VolumeMount(Spec):
    name: str
    mount_path: str


class TcpSocket(Spec):
    port: IntOrString


class HttpGet(Spec):
    port: IntOrString
    path: str = "/"


class ExecAction(Spec):
    command: tuple[str, ...]


class Probe(Spec):
    """Kubernetes probe, with Kubernetes' defaults."""

    tcp_socket: TcpSocket | None = None
    http_get: HttpGet | None = None
    exec_: ExecAction | None = Field(default=None, alias="exec")
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    failure_threshold: int = 3
    timeout_seconds: int = 1


class Container(Spec):
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    readiness_probe: Probe | None = None


class Backoff(Spec):
    duration: IntOrString | None = None
    factor: IntOrString | None = None
    max_duration: IntOrString | None = None


class RetryStrategy(Spec):
    limit: IntOrString | None = None
    retry_policy: Literal["Always", "OnFailure", "OnError"] = "OnFailure"
    backoff: Backoff | None = None


class Sequence(Spec):
    count: IntOrString | None = None
    start: IntOrString | None = None
    end: IntOrString | None = None
    format: str | None = None


class TemplateRef(Spec):
    name: str
    template: str


class DagTask(Spec):
    name: str
    template: str | None = None
    template_ref: TemplateRef | None = None
    arguments: Arguments = Arguments()
    dependencies: tuple[str, ...] | None = None
    depends: str | None = None
    when: str | None = None
    with_items: tuple[JsonValue, ...] | None = None
    with_param: str | None = None
    with_sequence: Sequence | None = None

    @property
    def fans_out(self) -> bool:
        return (
            self.with_items is not None
            or self.with_param is not None
            or self.with_sequence is not None
        )


class DagTemplate(Spec):
    tasks: tuple[DagTask, ...]
    fail_fast: bool = True


class EmptyDir(Spec):
    pass


class Volume(Spec):
    name: str
    empty_dir: EmptyDir


class LocalObjectReference(Spec):
    name: str


class Cache(Spec):
    config_map: LocalObjectReference


class Memoize(Spec):
    """Argo's step memoization; locally the cache is kept in the bucket (engine/reuse.py)."""

    key: str
    max_age: str
    cache: Cache


class Mutex(Spec):
    name: str
    namespace: str | None = None


class Synchronization(Spec):
    """Template mutexes (engine/mutex.py); semaphores, which need a ConfigMap, are refused."""

    mutexes: tuple[Mutex, ...] = ()


class Template(Spec):
    name: str
    container: Container | None = None
    dag: DagTemplate | None = None
    inputs: Inputs = Inputs()
    outputs: Outputs = Outputs()
    retry_strategy: RetryStrategy | None = None
    daemon: bool = False
    active_deadline_seconds: IntOrString | None = None
    parallelism: int | None = Field(default=None, ge=1)
    volumes: tuple[Volume, ...] = ()
    memoize: Memoize | None = None
    synchronization: Synchronization | None = None


class WorkflowTemplateRef(Spec):
    name: str


class WorkflowSpec(Spec):
    entrypoint: str | None = None
    arguments: WorkflowArguments = WorkflowArguments()
    templates: tuple[Template, ...] = ()
    volumes: tuple[Volume, ...] = ()
    on_exit: str | None = None
    parallelism: int | None = Field(default=None, ge=1)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    workflow_template_ref: WorkflowTemplateRef | None = None


class WorkflowManifest(Spec):
    KIND: ClassVar[str] = "Workflow"
    api_version: Literal["argoproj.io/v1alpha1"]
    kind: Literal["Workflow"]
    metadata: Metadata
    spec: WorkflowSpec


class WorkflowTemplateManifest(Spec):
    KIND: ClassVar[str] = "WorkflowTemplate"
    api_version: Literal["argoproj.io/v1alpha1"]
    kind: Literal["WorkflowTemplate"]
    metadata: Metadata
    spec: WorkflowSpec


M = TypeVar("M", bound=Spec)


def parse(model: type[M], manifest: object, source: str) -> M:
    """Validate a manifest strictly; the first problem is raised with its full path."""
    try:
        return model.model_validate(manifest)
    except ValidationError as error:
        raise _describe(error, source) from None


def format_path(parts: tuple[int | str, ...]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _describe(error: ValidationError, source: str) -> ManifestError:
    issues = error.errors()
    for issue in issues:
        if issue["type"] == "extra_forbidden":
            path = format_path(tuple(issue["loc"]))
            return UnsupportedField(source, path, "field not supported by the local engine")
        if issue["type"] == REFUSED_FIELD:
            context = issue.get("ctx") or {}
            path = format_path((*issue["loc"], str(context.get("field", "?"))))
            return UnsupportedField(source, path, str(context.get("reason", "refused")))
    lines = [
        f"{source}: {format_path(tuple(issue['loc'])) or '(top level)'}: "
        # Sequences are tuples in the models but lists in YAML.
        f"{issue['msg'].replace('valid tuple', 'valid list')}"
        f" (got {issue.get('input')!r:.80})"
        for issue in issues
    ]
    return ManifestError("\n".join(lines))
