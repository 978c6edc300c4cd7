"""The registry is the one declaration of each step: every template the compiler writes
passes exactly what that step's own parser accepts, with values it can parse."""

import ast
import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from steps.core.harness import OUT, parser
from steps.core.registry import STEPS, Input, Origin, StepDef, positive_int
from tests.support.paths import ROOT
from workflows.compiler import compile_manifests
from workflows.config import load_config

CONFIGS = [ROOT / "config" / "cluster.yaml", ROOT / "config" / "local.yaml"]
PLACEHOLDER = re.compile(r"^\{\{inputs\.parameters\.([^}]+)\}\}$")
SAMPLES: dict[Any, str] = {int: "9091", positive_int: "2", str: "x", Path: "/tmp/x", float: "0.5"}


def step_templates(config: Path) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every `python -m steps` container of the compiled manifests, with the workflow's
    parameter values."""
    found = []
    for manifest in compile_manifests(load_config(config)).files().values():
        spec = manifest["spec"].get("workflowSpec", manifest["spec"])
        arguments = {p["name"]: p["value"] for p in spec.get("arguments", {}).get("parameters", [])}
        for template in spec.get("templates", []):
            if template.get("container", {}).get("command", [])[:3] == ["python", "-m", "steps"]:
                found.append((template, arguments))
    return found


def resolved_args(template: dict[str, Any], step: StepDef, arguments: dict[str, str]) -> list[str]:
    """The container's args with each `{{inputs.parameters.x}}` replaced by a value the
    workflow would give: the template's own, the workflow parameter's, or a sample."""
    inputs = {item.name: item for item in step.inputs}
    defaults = {p["name"]: p.get("value") for p in template.get("inputs", {}).get("parameters", [])}
    args = []
    for arg in template["container"]["args"]:
        match = PLACEHOLDER.match(arg)
        if match is None:
            args.append(arg)
            continue
        name = match.group(1)
        item: Input[Any] = inputs[name]
        args.append(defaults.get(name) or arguments.get(name) or SAMPLES[item.parse])
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_every_compiled_template_parses_with_its_steps_own_parser(config: Path) -> None:
    templates = step_templates(config)
    assert {t["container"]["command"][3] for t, _ in templates} == {
        "audit", "provenance", "tracker", "train", "model-check", "quantize", "evaluate",
        "model-card", "deploy", "summary", "drift",
    }  # fmt: skip
    for template, arguments in templates:
        step = STEPS[template["container"]["command"][3]]
        args = resolved_args(template, step, arguments)
        parsed = vars(parser(step).parse_args(args))
        for item in step.inputs:
            value = parsed[item.name]
            assert value is not None, f"{template['name']}: --{item.name} not passed"
            if item.spec is not None:
                assert isinstance(value, item.spec), f"{template['name']}: --{item.name}"
        flags = {arg for arg in template["container"]["args"] if arg.startswith("--")}
        expected = {f"--{i.name}" for i in step.inputs} | {
            f"--{a.name}" for a in step.input_artifacts
        }
        assert flags == expected | ({f"--{OUT}"} if step.writes_outputs else set())


def test_a_template_flag_the_step_does_not_know_is_refused() -> None:
    template, arguments = next(
        (t, a) for t, a in step_templates(CONFIGS[0]) if t["name"] == "evaluate"
    )
    renamed = copy.deepcopy(template)
    args = renamed["container"]["args"]
    args[args.index("--dataset-uri")] = "--dataset-url"
    step = STEPS["evaluate"]
    with pytest.raises(SystemExit) as exited:
        parser(step).parse_args(resolved_args(renamed, step, arguments))
    assert exited.value.code == 2


def test_workflow_inputs_are_workflow_parameters_of_every_compiled_run() -> None:
    for template, arguments in step_templates(CONFIGS[0]):
        step = STEPS[template["container"]["command"][3]]
        for item in step.inputs:
            if item.origin is Origin.WORKFLOW:
                assert item.name in arguments, f"{step.name}: {item.name}"


@pytest.mark.parametrize("step", list(STEPS.values()), ids=lambda step: step.name.value)
def test_every_step_module_defines_run(step: StepDef) -> None:
    """Read, not imported: importing every step would load every library."""
    found = importlib.util.find_spec(step.module)
    assert found is not None and found.origin is not None, step.module
    tree = ast.parse(Path(found.origin).read_text())
    runs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    assert len(runs) == 1, f"{step.module} must define run(ctx) -> Outcome"
    assert [a.arg for a in runs[0].args.args] == ["ctx"]


def test_names_are_unique_and_artifacts_declared_once() -> None:
    templates = [step.template_name for step in STEPS.values()]
    assert len(templates) == len(set(templates))
    for step in STEPS.values():
        names = [i.name for i in step.arguments] + [a.name for a in step.input_artifacts]
        assert len(names) == len(set(names)), step.name
        assert OUT not in names or not step.writes_outputs, step.name
