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

from steps.core.names import Env
from steps.core.registry import (
    RUN_PREFIX,
    SUMMARY,
    SUMMARY_SPEC,
    WORKFLOW_FAILURES,
    WORKFLOW_NAME,
    WORKFLOW_STATUS,
)
from steps.core.specs import SummarySpec
from workflows.config import ConfigError, LoadedConfig
from workflows.step_template import step_container

EXIT_TEMPLATE = SUMMARY.template_name
WEBHOOK_KEY = "url"
"""The key of the webhook Secret (`argo.webhook_secret`) that holds the URL."""
POD_NAME = "{{pod.name}}"


def run_prefix(key_format: str) -> str:
    """The run's folder: keyFormat up to `{{pod.name}}`, which must be run-scoped."""
    prefix, found, _ = key_format.partition(POD_NAME)
    if not found or "{{workflow." not in prefix or not prefix.endswith("/"):
        raise ConfigError(
            f"key 'storage.key_format': {key_format!r} must be a run-scoped folder then the pod, "
            "e.g. '{{workflow.name}}/{{pod.name}}', so each run's artifacts sit together"
        )
    return prefix


def summary_template(config: LoadedConfig, templates: Sequence[str]) -> Container:
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
        WORKFLOW_NAME: "{{workflow.name}}",
        WORKFLOW_STATUS: "{{workflow.status}}",
        WORKFLOW_FAILURES: "{{workflow.failures}}",
        RUN_PREFIX: run_prefix(pipeline.storage.key_format),
        SUMMARY_SPEC: spec.model_dump_json(),
    }
    return step_container(
        SUMMARY,
        config,
        input_values={item.name: value for item, value in values.items()},
        extra_env=env,
    )
