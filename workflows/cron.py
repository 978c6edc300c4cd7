"""The retraining CronWorkflow: runs the training WorkflowTemplate on a schedule.

A later issue puts a drift check in front of training; for now it retrains on schedule.
"""

from hera.workflows import CronWorkflow, Parameter
from hera.workflows import models as m

from workflows.config import LoadedConfig
from workflows.pipeline import TEMPLATE_NAME, workflow_arguments

CRON_NAME = "retraining-cron"


def build_cron(config: LoadedConfig) -> CronWorkflow:
    pipeline = config.pipeline
    labels = {
        "app.kubernetes.io/name": "mlpipe",
        "mlpipe/model": pipeline.model_name,
        "mlpipe/trigger": "schedule",
    }
    title = {"workflows.argoproj.io/title": f"Scheduled retraining: {pipeline.model_name}"}
    return CronWorkflow(
        name=CRON_NAME,
        namespace=pipeline.argo.namespace,
        labels=labels,
        annotations=title,
        schedules=list(pipeline.schedule.schedules),
        timezone=pipeline.schedule.timezone,
        concurrency_policy="Forbid",
        starting_deadline_seconds=600,
        successful_jobs_history_limit=5,
        failed_jobs_history_limit=5,
        cron_suspend=pipeline.schedule.suspend,
        workflow_metadata=m.WorkflowMetadata(labels=labels, annotations=title),
        workflow_template_ref=m.WorkflowTemplateRef(name=TEMPLATE_NAME),
        arguments=[
            Parameter(name=name.value, value=value)
            for name, value in workflow_arguments(config).items()
        ],
    )
