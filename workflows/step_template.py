"""Hera `Container` templates that run `python -m steps <name>`, hardened by default.

A step's template is derived from its declaration (steps/core/registry.py). Every step
template follows one shape, so the local engine and a reader can rely on it:
inputs become `--<name> <value>` arguments, input artifacts land under IN_DIR, and the step
writes its outputs under OUT_DIR (parameters in OUT_DIR/parameters/<name>). The one
writable place is an emptyDir at /tmp, because the root filesystem is read-only.

Hardened by default: every template runs under a named ServiceAccount, with requests and
limits, an activeDeadlineSeconds, a non-root read-only container without capabilities, and
S3 credentials only by secretKeyRef. Each gets Prometheus gauges (workflows/metrics.py), and
its `parameters/` folder is also stored as an artifact so the run summary can read the key
numbers after the pod is gone.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hera.workflows import (
    Artifact,
    Container,
    Env,
    FieldEnv,
    NoneArchiveStrategy,
    Parameter,
    Resources,
    SecretEnv,
)
from hera.workflows import models as m

from steps.core.names import PARAMETERS_DIR, ArtifactName, Param
from steps.core.names import Artifact as StepArtifact
from steps.core.names import Env as StepEnv
from steps.core.registry import Identity, StepDef
from workflows.config import LoadedConfig
from workflows.metrics import template_metrics
from workflows.parameters import CODE_VERSION, CONFIG_DIGEST

WORK_VOLUME = "work"
WORK_MOUNT = "/tmp"
OUT_DIR = "/tmp/mlpipe/out"
IN_DIR = "/tmp/mlpipe/in"
RUN_AS_USER = 10001


@dataclass(frozen=True)
class ImageSettings:
    """What every step container shares, taken from the config."""

    image: str
    bucket: str
    region: str
    credentials_secret: str
    cpu: str
    memory: str
    service_account: str
    deadline_seconds: int


def container_security() -> m.SecurityContext:
    return m.SecurityContext(
        run_as_non_root=True,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def pod_security() -> m.PodSecurityContext:
    return m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        fs_group=RUN_AS_USER,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def storage_env(settings: ImageSettings) -> list[Env | SecretEnv]:
    """S3 endpoint and credentials from a Secret, so no credential is ever in the YAML."""
    secret = settings.credentials_secret
    return [
        SecretEnv(name=StepEnv.S3_ENDPOINT, secret_name=secret, secret_key="endpoint"),
        SecretEnv(name=StepEnv.ACCESS_KEY, secret_name=secret, secret_key="access-key"),
        SecretEnv(name=StepEnv.SECRET_KEY, secret_name=secret, secret_key="secret-key"),
        Env(name=StepEnv.S3_BUCKET, value=settings.bucket),
        Env(name=StepEnv.S3_REGION, value=settings.region),
    ]


def pod_ip_env() -> FieldEnv:
    """The pod's own IP, from the downward API: what a daemon listens on, so that dependants
    reach it at `{{tasks.<name>.ip}}` and a retried daemon (a new pod) binds a new address."""
    return FieldEnv(name=StepEnv.POD_IP, field_path="status.podIP")


def output_parameter(param: Param) -> Parameter:
    return Parameter(
        name=param.value,
        value_from=m.ValueFrom(path=f"{OUT_DIR}/{PARAMETERS_DIR}/{param.value}"),
    )


def output_artifact(artifact: ArtifactName) -> Artifact:
    return Artifact(
        name=artifact.name,
        path=f"{OUT_DIR}/{artifact.filename}",
        archive=NoneArchiveStrategy(),
    )


SIGNING_SECRET_KEY = "private-key"
"""Key in the signing Secret holding the Ed25519 private key PEM."""


@dataclass(frozen=True)
class Attestation:
    """What a step needs to write its provenance statement (steps/core/attestation.py): where its
    artifacts will be stored (the repository's keyFormat) and the signing key's Secret."""

    key_format: str
    signing_secret: str | None = None


def attestation_env(attestation: Attestation) -> list[Env | SecretEnv]:
    """The run details a statement records, from Argo's variables and the workflow's
    `code-version` and `config-digest` parameters (set by both engines alike)."""
    env: list[Env | SecretEnv] = [
        Env(name=StepEnv.WORKFLOW_NAME, value="{{workflow.name}}"),
        Env(name=StepEnv.WORKFLOW_UID, value="{{workflow.uid}}"),
        Env(name=StepEnv.ARTIFACT_PREFIX, value=attestation.key_format),
        Env(
            name=StepEnv.CODE_VERSION,
            value=f"{{{{workflow.parameters.{CODE_VERSION}}}}}",
        ),
        Env(
            name=StepEnv.CONFIG_DIGEST,
            value=f"{{{{workflow.parameters.{CONFIG_DIGEST}}}}}",
        ),
    ]
    if attestation.signing_secret is not None:
        env.append(
            SecretEnv(
                name=StepEnv.SIGNING_KEY,
                secret_name=attestation.signing_secret,
                secret_key=SIGNING_SECRET_KEY,
            )
        )
    return env


def attestation_artifact() -> Artifact:
    """The step's statement; optional, as a failed step (or a train worker other than rank 0)
    writes none."""
    artifact = output_artifact(StepArtifact.ATTESTATION)
    artifact.optional = True
    return artifact


def parameters_artifact() -> Artifact:
    """The step's `parameters/` folder; optional, as a step may fail before writing it."""
    artifact = output_artifact(StepArtifact.PARAMETERS)
    artifact.optional = True
    return artifact


def input_artifact_path(artifact: ArtifactName) -> str:
    return f"{IN_DIR}/{artifact.filename}"


def image_settings(config: LoadedConfig) -> ImageSettings:
    pipeline = config.pipeline
    return ImageSettings(
        image=pipeline.argo.steps_image,
        bucket=pipeline.storage.bucket,
        region=pipeline.storage.region,
        credentials_secret=pipeline.storage.credentials_secret,
        cpu=pipeline.argo.step_cpu,
        memory=pipeline.argo.step_memory,
        service_account=pipeline.argo.service_account,
        deadline_seconds=pipeline.argo.step_deadline_seconds,
    )


def attestation(config: LoadedConfig) -> Attestation:
    provenance = config.pipeline.provenance
    return Attestation(
        key_format=config.pipeline.storage.key_format,
        signing_secret=provenance.signing_secret if provenance.signing else None,
    )


def step_container(
    step: StepDef,
    config: LoadedConfig,
    *,
    readiness_port: int | None = None,
    input_values: Mapping[str, str] | None = None,
    extra_env: Sequence[Env | SecretEnv] = (),
) -> Container:
    """A step's template, from its declaration: each input `x` is passed to the step as
    `--x {{inputs.parameters.x}}`, each input artifact as `--<name> <its path>`.

    `input_values` gives inputs a value when no argument supplies one (the onExit template
    has no caller); a daemon gets a readiness probe on `readiness_port`. An attested step
    records its provenance statement as an artifact.
    """
    settings = image_settings(config)
    inputs = [item.name for item in step.inputs]
    args: list[str] = []
    for parameter in inputs:
        args += [f"--{parameter}", f"{{{{inputs.parameters.{parameter}}}}}"]
    for artifact in step.input_artifacts:
        args += [f"--{artifact.name}", input_artifact_path(artifact)]
    if step.writes_outputs:
        args += ["--out", OUT_DIR]
    probe = None
    if readiness_port is not None:
        probe = m.Probe(
            exec=m.ExecAction(command=listening_probe(readiness_port)),
            period_seconds=2,
            failure_threshold=30,
        )
    cpu, memory = _cpu(step, config) or settings.cpu, step.resources.memory or settings.memory
    return Container(
        name=step.template_name,
        image=settings.image,
        command=["python", "-m", "steps", step.name.value],
        args=args,
        inputs=[
            _input_parameter(parameter, (input_values or {}).get(parameter)) for parameter in inputs
        ]
        + [Artifact(name=a.name, path=input_artifact_path(a)) for a in step.input_artifacts],
        outputs=[output_parameter(p) for p in step.outputs]
        + [output_artifact(a) for a in step.artifacts]
        + ([parameters_artifact()] if step.outputs else [])
        + ([attestation_artifact()] if step.attested else []),
        env=[
            *storage_env(settings),
            *(attestation_env(attestation(config)) if step.attested else []),
            *([pod_ip_env()] if step.daemon else []),
            *extra_env,
        ],
        volume_mounts=[m.VolumeMount(name=WORK_VOLUME, mount_path=WORK_MOUNT)],
        security_context=container_security(),
        resources=Resources(
            cpu_request=cpu, cpu_limit=cpu, memory_request=memory, memory_limit=memory
        ),
        service_account_name=_service_account(step, config),
        active_deadline_seconds=settings.deadline_seconds,
        metrics=template_metrics(step.template_name, [p.value for p in step.outputs]),
        daemon=step.daemon or None,
        readiness_probe=probe,
    )


def listening_probe(port: int) -> list[str]:
    """Ready once something listens on `port`, read from the kernel's socket table: a
    tcpSocket probe would connect, and XGBoost's tracker logs "Failed to verify" for every
    connection that is not a worker."""
    listening = f":{port:04X} [0-9A-F]+:[0-9A-F]+ 0A "  # local address, remote, state LISTEN
    return ["grep", "-Eq", listening, "/proc/net/tcp", "/proc/net/tcp6"]


def _cpu(step: StepDef, config: LoadedConfig) -> str | None:
    """The step's own CPU request, if it sets one: fixed, or its spec's `cpu`."""
    if not step.resources.cpu_from_spec:
        return step.resources.cpu
    (kind,) = step.specs
    cores = getattr(config.spec(kind), "cpu", None)
    if not isinstance(cores, int):
        raise TypeError(f"step {step.name}: {kind.__name__} has no integer `cpu`")
    return str(cores)


def _service_account(step: StepDef, config: LoadedConfig) -> str:
    argo = config.pipeline.argo
    if step.resources.identity is Identity.DEPLOY:
        return argo.deploy_service_account
    return argo.service_account


def _input_parameter(name: str, default: str | None) -> Parameter:
    # Hera serialises value=None as the string 'null', which Argo would pass on as a value.
    return Parameter(name=name) if default is None else Parameter(name=name, value=default)
