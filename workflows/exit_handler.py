"""The workflow's onExit handler: the `summary` step, run whatever way the run ended.

Argo runs `spec.onExit` after the entrypoint, with `{{workflow.status}}` and
`{{workflow.failures}}` set; an exit template has no caller to pass it arguments, so its
inputs carry those variables as their values. The step then reads the run's folder in the
artifact repository: the part of keyFormat before `{{pod.name}}`. The webhook URL comes
from a Secret by an optional secretKeyRef, so a missing Secret means "no notification"
rather than a pod that cannot start.
"""

from collections.abc import Sequence

from hera.workflows import Container, SecretEnv

from steps.core.names import Artifact, Env, Param, Step
from steps.core.specs import SummarySpec
from workflows.config import ConfigError, LoadedConfig
from workflows.parameters import StepInput
from workflows.step_template import ImageSettings, step_container

EXIT_TEMPLATE = "summary"
WEBHOOK_KEY = "url"
"""The key of the webhook Secret (`argo.webhook_secret`) that holds the URL."""
POD_NAME = "{{pod.name}}"
SUMMARY_CPU = "250m"
SUMMARY_MEMORY = "256Mi"
"""Listing a run's folder and rendering one page needs little; the steps' size is wasteful."""


def run_prefix(key_format: str) -> str:
    """The run's folder: keyFormat up to `{{pod.name}}`, which must be run-scoped."""
    prefix, found, _ = key_format.partition(POD_NAME)
    if not found or "{{workflow." not in prefix or not prefix.endswith("/"):
        raise ConfigError(
            f"key 'storage.key_format': {key_format!r} must be a run-scoped folder then the pod, "
            "e.g. '{{workflow.name}}/{{pod.name}}', so each run's artifacts sit together"
        )
    return prefix


def summary_template(
    config: LoadedConfig, settings: ImageSettings, templates: Sequence[str]
) -> Container:
    """The exit template; `templates` are the pipeline's container templates in DAG order."""
    pipeline = config.pipeline
    spec = SummarySpec(
        templates=list(templates), argo_ui=pipeline.argo.server, namespace=pipeline.argo.namespace
    )
    webhook = pipeline.argo.webhook_secret
    env = (
        [
            SecretEnv(
                name=Env.WEBHOOK_URL, secret_name=webhook, secret_key=WEBHOOK_KEY, optional=True
            )
        ]
        if webhook
        else []
    )
    values = {
        StepInput.WORKFLOW_NAME: "{{workflow.name}}",
        StepInput.WORKFLOW_STATUS: "{{workflow.status}}",
        StepInput.WORKFLOW_FAILURES: "{{workflow.failures}}",
        StepInput.RUN_PREFIX: run_prefix(pipeline.storage.key_format),
        StepInput.SUMMARY_SPEC: spec.model_dump_json(),
    }
    return step_container(
        EXIT_TEMPLATE,
        Step.SUMMARY,
        settings,
        inputs=list(values),
        input_values={name.value: value for name, value in values.items()},
        output_parameters=[Param.NOTIFIED],
        output_artifacts=[Artifact.RUN_SUMMARY, Artifact.RUN_SUMMARY_REPORT],
        extra_env=env,
        cpu=SUMMARY_CPU,
        memory=SUMMARY_MEMORY,
    )
