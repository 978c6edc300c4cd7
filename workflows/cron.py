"""The retraining CronWorkflow: on schedule, check for drift; train only when it calls for it.

Each scheduled run has two tasks: `drift-check` (`python -m steps drift`) and `retrain`,
the training WorkflowTemplate's entrypoint DAG by `templateRef`, which runs only `when` the
check answers `retrain == true`. When nothing changed the run ends after the check, whose
`reason` output says why. `concurrencyPolicy: Forbid`: a slow retraining is never joined
by a second one.

A templateRef runs the referenced templates under the calling workflow's own settings
(service account, security context, volumes, artifact repository, GC, deadlines), so those
are read from the training template here: a scheduled run and a manual one cannot differ.
"""

from typing import Any

from hera.workflows import DAG, CronWorkflow, Parameter, Task
from hera.workflows import models as m

from steps.core.names import Param
from steps.core.registry import DRIFT
from workflows.config import LoadedConfig
from workflows.exit_handler import EXIT_TEMPLATE, summary_template
from workflows.parameters import parameter_value, window_uri, workflow_inputs
from workflows.pipeline import ENTRYPOINT as TRAINING_ENTRYPOINT
from workflows.pipeline import STEPS, TEMPLATE_NAME, build_template, pipeline_arguments, run_labels
from workflows.step_task import step_task
from workflows.step_template import step_container

CRON_NAME = "retraining-cron"
ENTRYPOINT = "retrain-if-needed"
SCHEDULED_TRIGGER = "schedule"

RUN_SETTINGS = (
    "service_account_name",
    "security_context",
    "volumes",
    "active_deadline_seconds",
    "artifact_repository_ref",
    "pod_gc",
    "artifact_gc",
    "ttl_strategy",
    "archive_logs",
    "pod_metadata",
)
"""Workflow-level fields of the training template that its templates rely on at run time."""


class CronTask:
    """Task names of a scheduled run, as the Argo UI and `mlpipe schedule` show them."""

    DRIFT = "drift-check"
    RETRAIN = "retrain"


def cron_arguments(config: LoadedConfig) -> dict[str, str]:
    """The training run's parameters (the templateRef'd DAG reads them) plus the check's."""
    values = pipeline_arguments(config)
    for item in workflow_inputs([DRIFT]):
        values.setdefault(item.name, parameter_value(item, config))
    return values


def build_cron(config: LoadedConfig) -> CronWorkflow:
    pipeline = config.pipeline
    schedule = pipeline.schedule
    training = build_template(config)
    labels = run_labels(config, SCHEDULED_TRIGGER)
    annotations = {
        "workflows.argoproj.io/title": f"Scheduled retraining: {pipeline.model_name}",
        "workflows.argoproj.io/description": (
            f"drift check of {window_uri(config)} against the stable model "
            f"{pipeline.model_name}; runs WorkflowTemplate {TEMPLATE_NAME} only when drift, "
            "decay or the model's age calls for it (see the drift-check task's reason)"
        ),
    }
    run_settings: dict[str, Any] = {name: getattr(training, name) for name in RUN_SETTINGS}
    with CronWorkflow(
        name=CRON_NAME,
        namespace=pipeline.argo.namespace,
        labels=labels,
        annotations=annotations,
        schedules=list(schedule.schedules),
        timezone=schedule.timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=schedule.starting_deadline_seconds,
        successful_jobs_history_limit=schedule.successful_jobs_history_limit,
        failed_jobs_history_limit=schedule.failed_jobs_history_limit,
        cron_suspend=schedule.suspend,
        workflow_metadata=m.WorkflowMetadata(labels=labels, annotations=annotations),
        entrypoint=ENTRYPOINT,
        arguments=[
            Parameter(name=name, value=value) for name, value in cron_arguments(config).items()
        ],
        on_exit=training.on_exit,
        **run_settings,
    ) as cron:
        step_container(DRIFT, config)
        if training.on_exit == EXIT_TEMPLATE:
            # onExit names a template of the run itself: the cron run gets its own summary,
            # covering the check and whatever training ran.
            summary_template(config, [DRIFT.template_name, *(s.template_name for s in STEPS)])
        with DAG(name=ENTRYPOINT):
            check = step_task(DRIFT, name=CronTask.DRIFT)
            retrain = Task(
                name=CronTask.RETRAIN,
                template_ref=m.TemplateRef(name=TEMPLATE_NAME, template=TRAINING_ENTRYPOINT),
                when=f"{{{{tasks.{CronTask.DRIFT}.outputs.parameters.{Param.RETRAIN.value}}}}} "
                "== true",
            )
            check >> retrain
    return cron
