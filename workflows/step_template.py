"""Hera `Container` templates that run `python -m steps <name>`, hardened by default.

Every step template follows one shape, so the local engine and a reader can rely on it:
inputs become `--<name> <value>` arguments, input artifacts land under IN_DIR, and the step
writes its outputs under OUT_DIR (parameters in OUT_DIR/parameters/<name>). The one
writable place is an emptyDir at /tmp, because the root filesystem is read-only.
"""

from collections.abc import Sequence
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

from steps.names import PARAMETERS_DIR, ArtifactName, Param, Step
from steps.names import Env as StepEnv

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
) -> Container:
    """A step template; each input `x` is passed to the step as `--x {{inputs.parameters.x}}`."""
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
            tcp_socket=m.TCPSocketAction(port=m.IntOrString(readiness_port)),
            period_seconds=2,
            failure_threshold=30,
        )
    return Container(
        name=name,
        image=settings.image,
        command=["python", "-m", "steps", step.value],
        args=args,
        inputs=[Parameter(name=parameter) for parameter in inputs]
        + [Artifact(name=a.name, path=input_artifact_path(a)) for a in input_artifacts],
        outputs=[output_parameter(p) for p in output_parameters]
        + [output_artifact(a) for a in output_artifacts],
        env=storage_env(settings),
        volume_mounts=[m.VolumeMount(name=WORK_VOLUME, mount_path=WORK_MOUNT)],
        security_context=container_security(),
        resources=Resources(
            cpu_request=settings.cpu,
            cpu_limit=settings.cpu,
            memory_request=settings.memory,
            memory_limit=settings.memory,
        ),
        daemon=daemon or None,
        readiness_probe=probe,
    )
