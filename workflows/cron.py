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

from hera.workflows import DAG, Container, CronWorkflow, Parameter, Task, WorkflowTemplate
from hera.workflows import models as m

from steps.core.names import Artifact, Param, Step
from workflows.config import LoadedConfig
from workflows.exit_handler import EXIT_TEMPLATE, summary_template
from workflows.parameters import WorkflowParam
from workflows.pipeline import (
    ENTRYPOINT as TRAINING_ENTRYPOINT,
)
from workflows.pipeline import (
    TEMPLATE_NAME,
    build_template,
    image_settings,
    run_labels,
    workflow_arguments,
)
from workflows.step_template import step_container

CRON_NAME = "retraining-cron"
ENTRYPOINT = "retrain-if-needed"
DRIFT_TEMPLATE = "drift"
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

DRIFT_INPUTS = (
    WorkflowParam.WINDOW_URI,
    WorkflowParam.DATA_SPEC,
    WorkflowParam.DRIFT_SPEC,
    WorkflowParam.MODEL_NAME,
)


class CronTask:
    """Task names of a scheduled run, as the Argo UI and `mlpipe schedule` show them."""

    DRIFT = "drift-check"
    RETRAIN = "retrain"


def window_uri(config: LoadedConfig) -> str:
    """The data the check looks at: `drift.window_uri`, else what a retraining trains on."""
    pipeline = config.pipeline
    return pipeline.drift.window_uri or pipeline.data.uri


def cron_arguments(config: LoadedConfig) -> dict[WorkflowParam, str]:
    """The training run's parameters (the templateRef'd DAG reads them) plus the check's."""
    return {
        **workflow_arguments(config),
        WorkflowParam.WINDOW_URI: window_uri(config),
        WorkflowParam.DRIFT_SPEC: config.pipeline.drift.spec().model_dump_json(),
    }


def build_cron(config: LoadedConfig) -> CronWorkflow:
    pipeline = config.pipeline
    schedule = pipeline.schedule
    training = build_template(config)
    settings = image_settings(config)
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
            Parameter(name=name.value, value=value)
            for name, value in cron_arguments(config).items()
        ],
        on_exit=training.on_exit,
        **run_settings,
    ) as cron:
        drift = step_container(
            DRIFT_TEMPLATE,
            Step.DRIFT,
            settings,
            inputs=list(DRIFT_INPUTS),
            output_parameters=[Param.RETRAIN, Param.REASON, Param.DRIFT_SCORE],
            output_artifacts=[Artifact.DRIFT_RESULT, Artifact.DRIFT_REPORT],
        )
        if training.on_exit == EXIT_TEMPLATE:
            # onExit names a template of the run itself: the cron run gets its own summary,
            # covering the check and whatever training ran.
            summary_template(config, settings, [DRIFT_TEMPLATE, *_step_templates(training)])
        with DAG(name=ENTRYPOINT):
            check = Task(
                name=CronTask.DRIFT,
                template=drift,
                arguments={p.value: f"{{{{workflow.parameters.{p.value}}}}}" for p in DRIFT_INPUTS},
            )
            retrain = Task(
                name=CronTask.RETRAIN,
                template_ref=m.TemplateRef(name=TEMPLATE_NAME, template=TRAINING_ENTRYPOINT),
                when=f"{{{{tasks.{CronTask.DRIFT}.outputs.parameters.{Param.RETRAIN.value}}}}} "
                "== true",
            )
            check >> retrain
    return cron


def _step_templates(training: WorkflowTemplate) -> list[str]:
    """The training template's step containers in order (its DAGs and exit handler aside)."""
    return [
        str(template.name)
        for template in training.templates or []
        if isinstance(template, Container) and template.name != EXIT_TEMPLATE
    ]
