"""`mlpipe schedule run-once`: what the CronWorkflow would do now, run on this machine.

The compiled CronWorkflow is read back from disk and turned into the Workflow the Argo
controller would create at a scheduled time (its `workflowSpec`, its `workflowMetadata`,
the `workflows.argoproj.io/cron-workflow` label, the name `<cron>-<unix time>`); the local
engine then runs it next to the training WorkflowTemplate its `retrain` task refers to.
"""

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from steps.core.names import Param
from workflows.compiler import CRON_FILE, TEMPLATE_FILE, load_manifest
from workflows.config import LoadedConfig
from workflows.console import ConsoleView
from workflows.cron import CronTask
from workflows.engine import NodePhase, Observer, RunResult
from workflows.local_run import (
    LocalStorage,
    compile_local,
    engine_context,
    execute,
    local_storage,
    report,
    run_directory,
    signing_secrets,
    stage_data,
    with_overrides,
)

CRON_LABEL = "workflows.argoproj.io/cron-workflow"
"""The label Argo puts on every Workflow a CronWorkflow creates."""


def scheduled_workflow(cron: dict[str, Any], scheduled_at: datetime) -> dict[str, Any]:
    """The Workflow manifest Argo's controller creates from `cron` at `scheduled_at`."""
    name = cron["metadata"]["name"]
    spec = dict(cron["spec"]["workflowSpec"])
    metadata = dict(spec.pop("workflowMetadata", {}))
    labels = {**metadata.get("labels", {}), CRON_LABEL: name}
    return {
        "apiVersion": cron["apiVersion"],
        "kind": "Workflow",
        "metadata": {
            "name": f"{name}-{int(scheduled_at.timestamp())}",
            "namespace": cron["metadata"].get("namespace"),
            "labels": labels,
            "annotations": metadata.get("annotations", {}),
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class ScheduledRun:
    """One scheduled run and what its drift check decided."""

    result: RunResult
    retrain: bool | None
    """None when the check did not finish (the run failed before deciding)."""
    reason: str


def run_scheduled(
    config: LoadedConfig,
    storage: LocalStorage,
    environ: dict[str, str],
    observer: Observer,
) -> ScheduledRun:
    """Compile for this machine (local data and window staged to S3), then run the
    CronWorkflow's workflow once."""
    pipeline = config.pipeline
    data_uri = stage_data(storage.store, pipeline.data.uri)
    window = pipeline.drift.window_uri
    if window is not None and not window.endswith("/"):
        config = with_overrides(config, {"drift.window_uri": stage_data(storage.store, window)})
    run_dir = run_directory(pipeline)
    paths = {path.name: path for path in compile_local(config, data_uri, run_dir)}
    template = load_manifest(paths[TEMPLATE_FILE])
    workflow = scheduled_workflow(load_manifest(paths[CRON_FILE]), datetime.now(UTC))
    context = engine_context(config, storage, run_dir, environ, signing_secrets(config))
    result = execute(workflow, template, context, observer)
    check = next((node for node in result.nodes if node.path == CronTask.DRIFT), None)
    if check is None or check.phase is not NodePhase.SUCCEEDED:
        return ScheduledRun(result, None, "the drift check did not finish")
    decision = check.parameters.get(Param.RETRAIN.value)
    return ScheduledRun(result, decision == "true", check.parameters.get(Param.REASON.value, ""))


def run_once(config: LoadedConfig, console: Console) -> int:
    """`mlpipe schedule run-once`: 0 if the run succeeded (retrained or not), else 1."""
    environ = dict(os.environ)
    with local_storage(config.pipeline, environ) as storage, ConsoleView(console) as view:
        scheduled = run_scheduled(config, storage, environ, view)
    code = report(scheduled.result, console)
    if scheduled.retrain is not None:
        decision = "retrain" if scheduled.retrain else "no retraining"
        console.print(Text.assemble((decision, "bold"), ": ", scheduled.reason))
    return code
