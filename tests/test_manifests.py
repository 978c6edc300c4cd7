"""The manifests both engines run: committed YAML matches the Hera code, and is valid Argo."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from workflows.argo_schema import schema_errors
from workflows.compiler import compile_manifests, load_manifest, render
from workflows.config import load_config

ROOT = Path(__file__).resolve().parents[1]
COMPILED = ROOT / "workflows" / "compiled"


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return compile_manifests(load_config(ROOT / "config" / "cluster.yaml")).files()


def test_committed_yaml_matches_the_hera_code(manifests: dict[str, dict[str, Any]]) -> None:
    for name, manifest in manifests.items():
        committed = COMPILED / name
        assert committed.exists(), f"{committed} missing: run `make compiled`"
        assert committed.read_text() == render(manifest), (
            f"{committed} differs from the Hera code: run `make compiled` and review the diff"
        )


def test_every_manifest_validates_against_the_argo_v4_schema(
    manifests: dict[str, dict[str, Any]],
) -> None:
    for name, manifest in manifests.items():
        assert schema_errors(manifest) == [], name


def test_the_strict_check_rejects_an_unknown_field(
    manifests: dict[str, dict[str, Any]],
) -> None:
    broken = copy.deepcopy(manifests["workflow-template.yaml"])
    broken["spec"]["templates"][0]["container"]["sidecarMagic"] = True
    errors = schema_errors(broken)
    assert any("sidecarMagic" in error for error in errors), errors


def test_cron_uses_v4_schedules_not_the_removed_schedule(
    manifests: dict[str, dict[str, Any]],
) -> None:
    spec = manifests["cron-workflow.yaml"]["spec"]
    assert "schedule" not in spec and spec["schedules"]
    broken = copy.deepcopy(manifests["cron-workflow.yaml"])
    broken["spec"]["schedule"] = "0 3 * * *"
    assert schema_errors(broken)


VARIABLE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


def test_every_reference_resolves(manifests: dict[str, dict[str, Any]]) -> None:
    """Templates, task dependencies and {{...}} references all point at something real."""
    spec = manifests["workflow-template.yaml"]["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    workflow_params = {p["name"] for p in spec["arguments"]["parameters"]}
    assert spec["entrypoint"] in templates
    for template in templates.values():
        declared = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        for text in _strings(template):
            for variable in VARIABLE.findall(text):
                if variable.startswith("inputs.parameters."):
                    assert variable.removeprefix("inputs.parameters.") in declared, variable
                if variable.startswith("workflow.parameters."):
                    assert variable.removeprefix("workflow.parameters.") in workflow_params
        tasks = {task["name"]: task for task in template.get("dag", {}).get("tasks", [])}
        for task in tasks.values():
            assert task["template"] in templates, task["template"]
            upstream = _upstream(task["name"], tasks)
            for text in _strings(task) + _strings(template.get("outputs", {})):
                for variable in VARIABLE.findall(text):
                    if variable.startswith("tasks."):
                        referenced = variable.split(".")[1]
                        assert referenced in tasks, variable
                        if text in _strings(task):
                            assert referenced in upstream, f"{task['name']} uses {variable}"
    workflow = manifests["workflow.yaml"]
    assert (
        workflow["spec"]["workflowTemplateRef"]["name"]
        == manifests["workflow-template.yaml"]["metadata"]["name"]
    )
    assert {p["name"] for p in workflow["spec"]["arguments"]["parameters"]} == workflow_params


def _upstream(name: str, tasks: dict[str, dict[str, Any]]) -> set[str]:
    seen: set[str] = set()
    pending = [name]
    while pending:
        depends = tasks[pending.pop()].get("depends", "")
        for parent in re.findall(r"[A-Za-z0-9-]+", depends):
            if parent in tasks and parent not in seen:
                seen.add(parent)
                pending.append(parent)
    return seen


def test_committed_yaml_loads_as_single_manifests() -> None:
    for path in sorted(COMPILED.glob("*.yaml")):
        assert load_manifest(path)["apiVersion"] == "argoproj.io/v1alpha1"
