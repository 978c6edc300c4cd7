"""Hera `Container` templates that run `python -m steps <name>`, hardened by default.

Every step template follows one shape, so the local engine and a reader can rely on it:
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
    NoneArchiveStrategy,
    Parameter,
    Resources,
    SecretEnv,
)
from hera.workflows import models as m

from steps.core.names import PARAMETERS_DIR, ArtifactName, Param, Step
from steps.core.names import Artifact as StepArtifact
from steps.core.names import Env as StepEnv
from workflows.metrics import template_metrics
from workflows.parameters import WorkflowParam

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
            value=f"{{{{workflow.parameters.{WorkflowParam.CODE_VERSION.value}}}}}",
        ),
        Env(
            name=StepEnv.CONFIG_DIGEST,
            value=f"{{{{workflow.parameters.{WorkflowParam.CONFIG_DIGEST.value}}}}}",
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


def step_container(
    name: str,
    step: Step,
    settings: ImageSettings,
    *,
    inputs: Sequence[str] = (),
    input_artifacts: Sequence[ArtifactName] = (),
    output_parameters: Sequence[Param] = (),
    output_artifacts: Sequence[ArtifactName] = (),
    writes_outputs: bool = True,
    daemon: bool = False,
    readiness_port: int | None = None,
    input_values: Mapping[str, str] | None = None,
    extra_env: Sequence[Env | SecretEnv] = (),
    service_account: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    attestation: Attestation | None = None,
    memoize: m.Memoize | None = None,
) -> Container:
    """A step template; each input `x` is passed to the step as `--x {{inputs.parameters.x}}`.

    `input_values` gives inputs a value when no argument supplies one (the onExit template
    has no caller); `service_account`, `cpu` and `memory` override the settings' defaults.
    With `attestation` the step records its provenance statement as an artifact.
    """
    args: list[str] = []
    for parameter in inputs:
        args += [f"--{parameter}", f"{{{{inputs.parameters.{parameter}}}}}"]
    for artifact in input_artifacts:
        args += [f"--{artifact.name}", input_artifact_path(artifact)]
    if writes_outputs:
        args += ["--out", OUT_DIR]
    probe = None
    if readiness_port is not None:
        probe = m.Probe(
            exec=m.ExecAction(command=listening_probe(readiness_port)),
            period_seconds=2,
            failure_threshold=30,
        )
    return Container(
        name=name,
        image=settings.image,
        command=["python", "-m", "steps", step.value],
        args=args,
        inputs=[
            _input_parameter(parameter, (input_values or {}).get(parameter)) for parameter in inputs
        ]
        + [Artifact(name=a.name, path=input_artifact_path(a)) for a in input_artifacts],
        outputs=[output_parameter(p) for p in output_parameters]
        + [output_artifact(a) for a in output_artifacts]
        + ([parameters_artifact()] if output_parameters else [])
        + ([attestation_artifact()] if attestation is not None else []),
        env=[
            *storage_env(settings),
            *(attestation_env(attestation) if attestation is not None else []),
            *extra_env,
        ],
        volume_mounts=[m.VolumeMount(name=WORK_VOLUME, mount_path=WORK_MOUNT)],
        security_context=container_security(),
        resources=Resources(
            cpu_request=cpu or settings.cpu,
            cpu_limit=cpu or settings.cpu,
            memory_request=memory or settings.memory,
            memory_limit=memory or settings.memory,
        ),
        service_account_name=service_account or settings.service_account,
        active_deadline_seconds=settings.deadline_seconds,
        metrics=template_metrics(name, [p.value for p in output_parameters]),
        daemon=daemon or None,
        readiness_probe=probe,
        memoize=memoize,
    )


def listening_probe(port: int) -> list[str]:
    """Ready once something listens on `port`, read from the kernel's socket table: a
    tcpSocket probe would connect, and XGBoost's tracker logs "Failed to verify" for every
    connection that is not a worker."""
    listening = f":{port:04X} [0-9A-F]+:[0-9A-F]+ 0A "  # local address, remote, state LISTEN
    return ["grep", "-Eq", listening, "/proc/net/tcp", "/proc/net/tcp6"]


def _input_parameter(name: str, default: str | None) -> Parameter:
    # Hera serialises value=None as the string 'null', which Argo would pass on as a value.
    return Parameter(name=name) if default is None else Parameter(name=name, value=default)
