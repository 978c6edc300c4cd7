"""The retraining CronWorkflow as compiled: valid Argo v4, wired to the training template,
and runnable by the local engine as the Workflow the controller would create from it."""

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from steps.core.names import Param
from workflows.argo_schema import schema_errors
from workflows.compiler import CompiledManifests, compile_manifests
from workflows.config import load_config
from workflows.cron import CRON_NAME, RUN_SETTINGS, CronTask
from workflows.engine import check_workflow
from workflows.pipeline import ENTRYPOINT, TEMPLATE_NAME
from workflows.schedule import CRON_LABEL, scheduled_workflow

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = [
    "schedule.schedules=['0 3 * * *', '30 15 * * 1-5']",
    "schedule.timezone=Europe/Paris",
    "schedule.suspend=true",
    "schedule.starting_deadline_seconds=120",
    "schedule.successful_jobs_history_limit=7",
    "schedule.failed_jobs_history_limit=9",
    "drift.psi=0.3",
    "drift.window_uri=s3://mlpipe/incoming/churn/",
]


@pytest.fixture(scope="module")
def manifests() -> CompiledManifests:
    return compile_manifests(load_config(ROOT / "config" / "local.yaml", OVERRIDES))


@pytest.fixture(scope="module")
def cron(manifests: CompiledManifests) -> dict[str, Any]:
    return manifests.cron


def templates(cron: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in cron["spec"]["workflowSpec"]["templates"]}


def test_the_cron_is_valid_argo_v4_and_unknown_fields_are_rejected(
    cron: dict[str, Any],
) -> None:
    assert schema_errors(cron) == []
    for where in ("spec", "workflowSpec", "drift"):
        broken = copy.deepcopy(cron)
        target = {
            "spec": broken["spec"],
            "workflowSpec": broken["spec"]["workflowSpec"],
            "drift": templates(broken)["drift"]["container"],
        }[where]
        target["retrainMagic"] = True
        assert any("retrainMagic" in error for error in schema_errors(broken)), where


def test_schedule_settings_come_from_the_config(cron: dict[str, Any]) -> None:
    spec = cron["spec"]
    assert cron["metadata"]["name"] == CRON_NAME
    assert spec["schedules"] == ["0 3 * * *", "30 15 * * 1-5"]
    assert "schedule" not in spec
    assert spec["timezone"] == "Europe/Paris"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is True
    assert spec["startingDeadlineSeconds"] == 120
    assert spec["successfulJobsHistoryLimit"] == 7
    assert spec["failedJobsHistoryLimit"] == 9


def test_scheduled_runs_are_recognisable_in_the_argo_ui(cron: dict[str, Any]) -> None:
    metadata = cron["spec"]["workflowSpec"]["workflowMetadata"]
    assert metadata["labels"]["mlpipe/trigger"] == "schedule"
    assert metadata["labels"]["mlpipe/model"] == "churn"
    annotations = metadata["annotations"]
    assert annotations["workflows.argoproj.io/title"] == "Scheduled retraining: churn"
    assert "s3://mlpipe/incoming/churn/" in annotations["workflows.argoproj.io/description"]


def test_training_runs_by_template_ref_only_when_the_check_says_retrain(
    manifests: CompiledManifests, cron: dict[str, Any]
) -> None:
    spec = cron["spec"]["workflowSpec"]
    entry = templates(cron)[spec["entrypoint"]]
    check, retrain = entry["dag"]["tasks"]
    assert check["name"] == CronTask.DRIFT and check["template"] == "drift"
    assert retrain["name"] == CronTask.RETRAIN
    assert retrain["templateRef"] == {"name": TEMPLATE_NAME, "template": ENTRYPOINT}
    assert retrain["depends"] == CronTask.DRIFT
    assert retrain["when"] == f"{{{{tasks.{CronTask.DRIFT}.outputs.parameters.retrain}}}} == true"
    # The reference resolves: the training template has that entrypoint, the check that output.
    assert manifests.template["metadata"]["name"] == TEMPLATE_NAME
    assert manifests.template["spec"]["entrypoint"] == ENTRYPOINT
    outputs = {p["name"] for p in templates(cron)["drift"]["outputs"]["parameters"]}
    assert {Param.RETRAIN.value, Param.REASON.value} <= outputs


def test_the_check_gets_the_window_and_thresholds_from_the_config(cron: dict[str, Any]) -> None:
    arguments = {
        p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]
    }
    assert arguments["window-uri"] == "s3://mlpipe/incoming/churn/"
    assert '"psi":0.3' in arguments["drift-spec"]
    drift = templates(cron)["drift"]
    assert drift["container"]["command"] == ["python", "-m", "steps", "drift"]
    assert "--window-uri" in drift["container"]["args"]


def test_the_window_defaults_to_the_training_data() -> None:
    cron = compile_manifests(load_config(ROOT / "config" / "local.yaml")).cron
    arguments = {
        p["name"]: p["value"] for p in cron["spec"]["workflowSpec"]["arguments"]["parameters"]
    }
    assert arguments["window-uri"] == arguments["data-uri"]


RUN_SETTINGS_YAML = [
    "serviceAccountName",
    "securityContext",
    "volumes",
    "activeDeadlineSeconds",
    "artifactRepositoryRef",
    "podGC",
    "artifactGC",
    "ttlStrategy",
    "archiveLogs",
    "podMetadata",
]


def test_run_settings_match_the_training_template(
    manifests: CompiledManifests, cron: dict[str, Any]
) -> None:
    """A templateRef runs under the caller's settings: they must be the template's."""
    assert len(RUN_SETTINGS) == len(RUN_SETTINGS_YAML)
    workflow_spec, template_spec = cron["spec"]["workflowSpec"], manifests.template["spec"]
    for key in RUN_SETTINGS_YAML:
        assert key in template_spec, key
        assert workflow_spec[key] == template_spec[key], key
    assert workflow_spec.get("onExit") == template_spec.get("onExit")
    arguments = {p["name"] for p in workflow_spec["arguments"]["parameters"]}
    assert {p["name"] for p in template_spec["arguments"]["parameters"]} <= arguments


def test_the_scheduled_workflow_passes_the_local_engines_checks(
    manifests: CompiledManifests, cron: dict[str, Any]
) -> None:
    """Every field, reference and `{{...}}` variable, the templateRef'd DAG included."""
    at = datetime(2030, 5, 1, 3, 0, tzinfo=UTC)
    workflow = scheduled_workflow(cron, at)
    assert workflow["kind"] == "Workflow"
    assert workflow["metadata"]["name"] == f"{CRON_NAME}-{int(at.timestamp())}"
    assert workflow["metadata"]["labels"][CRON_LABEL] == CRON_NAME
    assert workflow["metadata"]["labels"]["mlpipe/trigger"] == "schedule"
    assert "workflowMetadata" not in workflow["spec"]
    plan = check_workflow(workflow, {TEMPLATE_NAME: manifests.template})
    assert (TEMPLATE_NAME, ENTRYPOINT) in plan.templates
    assert plan.entrypoint.template.name == cron["spec"]["workflowSpec"]["entrypoint"]
