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
    labels: dict[str, AnyString] = Field(default_factory=dict)
    annotations: dict[str, AnyString] = Field(default_factory=dict)


class ConfigMapKeySelector(Spec):
    name: str
    key: str
    optional: bool = False


class ParameterSource(Spec):
    """`valueFrom` of a workflow or input parameter: a ConfigMap key (EngineContext)."""

    config_map_key_ref: ConfigMapKeySelector | None = None
    default: AnyString | None = None


class WorkflowParameter(Spec):
    name: str
    value: AnyString | None = None
    enum: tuple[AnyString, ...] | None = None
    value_from: ParameterSource | None = None


class S3Location(Spec):
    """An object in the artifact repository's bucket, by key (other buckets are refused)."""

    key: str


class RawArtifact(Spec):
    data: str


class WorkflowArtifact(Spec):
    """`spec.arguments.artifacts`: what `{{workflow.artifacts...}}` and entrypoint inputs see."""

    name: str
    raw: RawArtifact | None = None
    s3: S3Location | None = None


class WorkflowArguments(Spec):
    parameters: tuple[WorkflowParameter, ...] = ()
    artifacts: tuple[WorkflowArtifact, ...] = ()


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
    raw: RawArtifact | None = None
    sub_path: str | None = None
    """A file or folder inside the artifact `from` names (Argo unpacks it, then picks)."""


class Arguments(Spec):
    parameters: tuple[ArgumentParameter, ...] = ()
    artifacts: tuple[ArgumentArtifact, ...] = ()


class InputParameter(Spec):
    name: str
    value: AnyString | None = None
    default: AnyString | None = None
    enum: tuple[AnyString, ...] | None = None
    value_from: ParameterSource | None = None


class InputArtifact(Spec):
    name: str
    path: str | None = None
    optional: bool = False
    s3: S3Location | None = None
    raw: RawArtifact | None = None
    archive: Archive | None = None


class Inputs(Spec):
    parameters: tuple[InputParameter, ...] = ()
    artifacts: tuple[InputArtifact, ...] = ()


class OutputValueFrom(Spec):
    path: str | None = None
    parameter: str | None = None
    expression: str | None = None
    default: AnyString | None = None


class OutputParameter(Spec):
    name: str
    value_from: OutputValueFrom
    global_name: str | None = None


class OutputArtifact(Spec):
    name: str
    path: str | None = None
    from_: str | None = Field(default=None, alias="from")
    from_expression: str | None = None
    archive: Archive | None = None
    optional: bool = False
    s3: S3Location | None = None
    """An explicit key in the artifact repository's bucket instead of the keyFormat one."""
    global_name: str | None = None


class Outputs(Spec):
    parameters: tuple[OutputParameter, ...] = ()
    artifacts: tuple[OutputArtifact, ...] = ()


class SecretKeySelector(Spec):
    name: str
    key: str
    optional: bool = False
    """As in Kubernetes: a missing secret or key leaves the variable unset."""


POD_IP_FIELD = "status.podIP"
"""The one downward-API field the engine fills: the pod's own IP (engine/podip.py)."""


class ObjectFieldSelector(Spec):
    """`fieldRef`: a field of the task's pod (Kubernetes' downward API)."""

    field_path: str
    api_version: Literal["v1"] = "v1"

    @model_validator(mode="before")
    @classmethod
    def _implemented(cls, data: Any) -> Any:
        path = data.get("fieldPath") if isinstance(data, dict) else None
        if isinstance(path, str) and path != POD_IP_FIELD:
            reason = (
                f"{path!r} is not implemented by the local engine, which fills "
                f"{POD_IP_FIELD!r} (the task's own IP) only"
            )
            raise PydanticCustomError(
                REFUSED_FIELD, "{reason}", {"field": "fieldPath", "reason": reason}
            )
        return data


class EnvVarSource(Spec):
    """Kubernetes requires exactly one source; these are the ones the engine fills."""

    secret_key_ref: SecretKeySelector | None = None
    field_ref: ObjectFieldSelector | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "EnvVarSource":
        if (self.secret_key_ref is None) == (self.field_ref is None):
            raise ValueError("needs exactly one of secretKeyRef or fieldRef")
        return self


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
    image: str = ""
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()
    readiness_probe: Probe | None = None
    working_dir: str | None = None


class ScriptTemplate(Container):
    """A container whose `source` is written to a file and passed as its last argument."""

    KIND: ClassVar[str] = "Container"
    source: str


class InitContainer(Container):
    KIND: ClassVar[str] = "Container"
    name: str
    mirror_volume_mounts: bool = False


class SetContainer(Container):
    """One container of a containerSet: they share the pod (volumes, network)."""

    KIND: ClassVar[str] = "Container"
    name: str
    dependencies: tuple[str, ...] = ()


class ContainerSetTemplate(Spec):
    containers: tuple[SetContainer, ...]
    volume_mounts: tuple[VolumeMount, ...] = ()


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
    cluster_scope: bool = False


class ContinueOn(Spec):
    failed: bool = False
    error: bool = False


class Hook(Spec):
    """A lifecycle hook; locally only `exit` hooks (run once their node finished)."""

    template: str | None = None
    template_ref: TemplateRef | None = None
    arguments: Arguments = Arguments()
    expression: str | None = None


class Call_(Spec):
    """What a DAG task and a step share: a template to run, its arguments, when and how often."""

    name: str
    template: str | None = None
    template_ref: TemplateRef | None = None
    inline: "Template | None" = None
    arguments: Arguments = Arguments()
    when: str | None = None
    with_items: tuple[JsonValue, ...] | None = None
    with_param: str | None = None
    with_sequence: Sequence | None = None
    continue_on: ContinueOn | None = None
    hooks: dict[str, Hook] = Field(default_factory=dict)
    on_exit: str | None = None

    @property
    def fans_out(self) -> bool:
        return (
            self.with_items is not None
            or self.with_param is not None
            or self.with_sequence is not None
        )

    def continues_on(self, phase: str) -> bool:
        """Argo's ContinuesOn: a failure (or error) the workflow goes on after."""
        if self.continue_on is None:
            return False
        return (phase == "Failed" and self.continue_on.failed) or (
            phase == "Error" and self.continue_on.error
        )

    @property
    def exit_hook(self) -> Hook | None:
        if "exit" in self.hooks:
            return self.hooks["exit"]
        return Hook(template=self.on_exit) if self.on_exit else None


class DagTask(Call_):
    dependencies: tuple[str, ...] | None = None
    depends: str | None = None


class Step(Call_):
    KIND: ClassVar[str] = "DagTask"


class DagTemplate(Spec):
    tasks: tuple[DagTask, ...]
    fail_fast: bool = True
    target: str | None = None


class EmptyDir(Spec):
    pass


class Volume(Spec):
    name: str
    empty_dir: EmptyDir | None = None


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
    """Mutexes (engine/mutex.py); semaphores, which need a ConfigMap, are refused."""

    mutexes: tuple[Mutex, ...] = ()


class ArchiveLocation(Spec):
    """Only `archiveLogs`: the local engine archives every main.log anyway."""

    archive_logs: bool | None = None


class Template(Spec):
    name: str = ""
    """Empty for an inline template (a task's or step's `inline`)."""
    container: Container | None = None
    script: ScriptTemplate | None = None
    container_set: ContainerSetTemplate | None = None
    dag: DagTemplate | None = None
    steps: tuple[tuple[Step, ...], ...] | None = None
    init_containers: tuple[InitContainer, ...] = ()
    inputs: Inputs = Inputs()
    outputs: Outputs = Outputs()
    retry_strategy: RetryStrategy | None = None
    daemon: bool = False
    active_deadline_seconds: IntOrString | None = None
    parallelism: int | None = Field(default=None, ge=1)
    volumes: tuple[Volume, ...] = ()
    memoize: Memoize | None = None
    synchronization: Synchronization | None = None
    archive_location: ArchiveLocation | None = None

    @property
    def pod_spec(self) -> "Container | None":
        """The main container of a pod template (container or script)."""
        return self.container or self.script

    @property
    def runs_pod(self) -> bool:
        return self.pod_spec is not None or self.container_set is not None


class WorkflowTemplateRef(Spec):
    name: str
    cluster_scope: bool = False


class DnsOption(Spec):
    name: str
    value: str | None = None


class DnsConfig(Spec):
    """The pod's resolver settings; locally a resolv.conf in the task's filesystem view."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[DnsOption, ...] = ()


class WorkflowSpec(Spec):
    entrypoint: str | None = None
    arguments: WorkflowArguments = WorkflowArguments()
    templates: tuple[Template, ...] = ()
    volumes: tuple[Volume, ...] = ()
    on_exit: str | None = None
    hooks: dict[str, Hook] = Field(default_factory=dict)
    parallelism: int | None = Field(default=None, ge=1)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    workflow_template_ref: WorkflowTemplateRef | None = None
    synchronization: Synchronization | None = None
    dns_config: DnsConfig | None = None
    service_account_name: str | None = None
    priority: int | None = None


class WorkflowManifest(Spec):
    KIND: ClassVar[str] = "Workflow"
    api_version: Literal["argoproj.io/v1alpha1"]
    kind: Literal["Workflow"]
    metadata: Metadata
    spec: WorkflowSpec


class WorkflowTemplateManifest(Spec):
    KIND: ClassVar[str] = "WorkflowTemplate"
    api_version: Literal["argoproj.io/v1alpha1"]
    kind: Literal["WorkflowTemplate", "ClusterWorkflowTemplate"]
    metadata: Metadata
    spec: WorkflowSpec


Call_.model_rebuild()
DagTask.model_rebuild()
Step.model_rebuild()


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
