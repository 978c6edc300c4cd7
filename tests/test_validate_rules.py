"""Argo v4's validation rules (workflows/engine/validate/), one rule per case: a manifest
Argo rejects and the nearest one it accepts. `ref` names the case in Argo v4.1.2's own
workflow/validate/validate_test.go or validate_dag_test.go the pair follows, where one exists.

Every accepted manifest must also pass the strict Argo schema, so "accepted" means valid
Argo, not merely silent rules.
"""

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from workflows.argo_schema import schema_problems
from workflows.engine.validate import Document, Library, Options, Problem, validate_document

Manifest = dict[str, Any]
Change = Callable[[Manifest], None]


def base() -> Manifest:
    """A valid Workflow: DAG `main` runs `step` twice, b after a, b reading a's output."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "rules-"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "known", "value": "1"}]},
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "a", "template": "step", "arguments": _p("x")},
                            {
                                "name": "b",
                                "template": "step",
                                "depends": "a",
                                "arguments": _p("{{tasks.a.outputs.parameters.out}}"),
                            },
                        ]
                    },
                },
                {
                    "name": "step",
                    "inputs": {"parameters": [{"name": "p"}]},
                    "container": {
                        "image": "python:3.12",
                        "command": ["python", "-c", "pass"],
                        "args": ["{{inputs.parameters.p}}"],
                    },
                    "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/out"}}]},
                },
            ],
        },
    }


def _p(value: str, name: str = "p") -> dict[str, Any]:
    return {"parameters": [{"name": name, "value": value}]}


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(manifest: Manifest, path: str) -> tuple[Any, str | int]:
    parts: list[str | int] = [
        int(index) if index else str(key) for key, index in _PART.findall(path)
    ]
    node: Any = manifest
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def put(path: str, value: Any) -> Change:
    def change(manifest: Manifest) -> None:
        node, last = _walk(manifest, path)
        if isinstance(node, list) and last == len(node):
            node.append(copy.deepcopy(value))
        else:
            node[last] = copy.deepcopy(value)

    return change


def drop(path: str) -> Change:
    def change(manifest: Manifest) -> None:
        node, last = _walk(manifest, path)
        del node[last]

    return change


def both(*changes: Change) -> Change:
    def change(manifest: Manifest) -> None:
        for each in changes:
            each(manifest)

    return change


def unchanged(manifest: Manifest) -> None:
    pass


MAIN, STEP = "spec.templates[0]", "spec.templates[1]"
TASK_A, TASK_B = f"{MAIN}.dag.tasks[0]", f"{MAIN}.dag.tasks[1]"
FANNED = {
    "name": "fan",
    "template": "step",
    "arguments": _p("{{item}}"),
    "withSequence": {"count": "2"},
}
DAG_OUTPUT = {"name": "o", "valueFrom": {"parameter": "{{tasks.a.outputs.parameters.out}}"}}
METRIC = {"name": "m", "help": "h", "gauge": {"value": "1", "realtime": False}}
ITEMS = {"name": "fan", "template": "step", "arguments": _p("{{item}}")}


@dataclass(frozen=True)
class Case:
    rule: str
    bad: Change
    good: Change
    path: str
    message: str
    ref: str = ""
    kind: str = "Workflow"
    options: Options = field(default_factory=Options)


CASES = [
    # --- names (validateWorkflowFieldNames, isValidParamOrArtifactName, object names) ------
    Case(
        "workflow name <= 63",
        put("metadata.name", "w" * 64),
        put("metadata.name", "w" * 63),
        "metadata.name",
        "must not be more than 63 characters",
    ),
    Case(
        "template names valid",
        put(f"{STEP}.name", "bad_name"),
        unchanged,
        "spec.templates[1]",
        "is invalid",
        "TestInvalidTemplateName",
    ),
    Case(
        "template names unique",
        put(f"{MAIN}.name", "step"),
        unchanged,
        "spec.templates[1]",
        "name 'step' is not unique",
        "TestDuplicateOrEmptyNames",
    ),
    Case(
        "task names unique",
        put(f"{TASK_B}.name", "a"),
        unchanged,
        f"{MAIN}.dag.tasks",
        "sorting failed: duplicated nodeName a",
    ),
    Case(
        "task names valid",
        both(put(f"{TASK_B}.name", "b_1"), drop(f"{TASK_B}.depends")),
        both(drop(f"{TASK_B}.depends"), put(f"{TASK_B}.arguments", _p("x"))),
        TASK_B,
        "'b_1' is invalid",
    ),
    Case(
        "input parameter names valid",
        put(f"{STEP}.inputs.parameters[0].name", "p.q"),
        unchanged,
        f"{STEP}.inputs.parameters[0]",
        "Parameter/Artifact name must consist",
        "TestInvalidInputParamName",
    ),
    Case(
        "input names unique",
        put(f"{STEP}.inputs.parameters", [{"name": "p"}, {"name": "p"}]),
        unchanged,
        f"{STEP}.inputs.parameters[1]",
        "name 'p' is not unique",
        "TestDuplicateOrEmptyNames",
    ),
    Case(
        "argument parameter names valid",
        put(f"{TASK_A}.arguments", _p("x", "p&")),
        unchanged,
        f"{TASK_A}.arguments.parameters[0]",
        "Parameter/Artifact name",
        "TestInvalidArgParamName",
    ),
    Case(
        "output parameter names valid",
        put(f"{STEP}.outputs.parameters[0].name", "o/ut"),
        unchanged,
        f"{STEP}.outputs.parameters[0]",
        "Parameter/Artifact name",
        "TestInvalidOutputParam",
    ),
    # --- template type and leaf rules (validateTemplateType, validateLeaf, validateNonLeaf) --
    Case(
        "one template type",
        put(f"{STEP}.script", {"image": "x", "source": "pass"}),
        unchanged,
        STEP,
        "multiple template types specified",
        "TestMultipleTemplateTypes",
    ),
    Case(
        "some template type",
        drop(f"{STEP}.container"),
        unchanged,
        STEP,
        "template type unspecified",
    ),
    Case(
        "container image required",
        drop(f"{STEP}.container.image"),
        unchanged,
        f"{STEP}.container.image",
        "container.image may not be empty",
    ),
    Case(
        "activeDeadlineSeconds only on leaves",
        put(f"{MAIN}.activeDeadlineSeconds", 60),
        put(f"{STEP}.activeDeadlineSeconds", 60),
        f"{MAIN}.activeDeadlineSeconds",
        "only valid for leaf templates",
    ),
    Case(
        "activeDeadlineSeconds not negative",
        put(f"{STEP}.activeDeadlineSeconds", -1),
        put(f"{STEP}.activeDeadlineSeconds", "{{inputs.parameters.p}}"),
        f"{STEP}.activeDeadlineSeconds",
        "must be a positive integer",
        "TestValidActiveDeadlineSeconds",
    ),
    Case(
        "activeDeadlineSeconds an int or a variable",
        put(f"{STEP}.activeDeadlineSeconds", "1h"),
        put(f"{STEP}.activeDeadlineSeconds", "3600"),
        f"{STEP}.activeDeadlineSeconds",
        "or an argo variable",
    ),
    Case(
        "parallelism only on steps/dag",
        put(f"{STEP}.parallelism", 2),
        put(f"{MAIN}.parallelism", 2),
        f"{STEP}.parallelism",
        "only valid for steps and dag",
        "TestLeafWithParallelism",
    ),
    Case(
        "timeout a duration",
        put(f"{STEP}.timeout", "60"),
        put(f"{STEP}.timeout", "60s"),
        f"{STEP}.timeout",
        "invalid duration format in timeout",
    ),
    Case(
        "timeout only on leaves",
        put(f"{MAIN}.timeout", "60s"),
        unchanged,
        f"{MAIN}.timeout",
        "DAG template doesn't support timeout field",
    ),
    Case(
        "mount paths distinct",
        both(
            put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/work"}]),
            put(f"{TASK_A}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
            put(f"{TASK_B}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
            put(f"{STEP}.container.volumeMounts", [{"name": "w", "mountPath": "/work"}]),
            put("spec.volumes", [{"name": "w", "emptyDir": {}}]),
        ),
        both(
            put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in"}]),
            put(f"{TASK_A}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
            put(f"{TASK_B}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
            put(f"{STEP}.container.volumeMounts", [{"name": "w", "mountPath": "/work"}]),
            put("spec.volumes", [{"name": "w", "emptyDir": {}}]),
        ),
        f"{STEP}.inputs.artifacts[0].path",
        "already mounted",
        "TestVolumeMountArtifactPathCollision",
    ),
    Case(
        "no reserved container names",
        put(f"{STEP}.sidecars", [{"name": "wait", "image": "x"}]),
        put(f"{STEP}.sidecars", [{"name": "proxy", "image": "x"}]),
        f"{STEP}.sidecars[0].name",
        "reserved Argo container name",
        "TestReservedAuxContainerNames",
    ),
    Case(
        "initContainers named",
        put(f"{STEP}.initContainers", [{"image": "x"}]),
        put(f"{STEP}.initContainers", [{"name": "prep", "image": "x"}]),
        f"{STEP}.initContainers[0]",
        "initContainers must all have container name",
    ),
    Case(
        "containerSet dependencies exist",
        both(
            put(f"{TASK_B}.arguments", _p("x")),
            put(
                STEP,
                {
                    "name": "step",
                    "inputs": {"parameters": [{"name": "p"}]},
                    "containerSet": {
                        "containers": [{"name": "main", "image": "x", "dependencies": ["ghost"]}]
                    },
                },
            ),
        ),
        both(
            put(f"{TASK_B}.arguments", _p("x")),
            put(
                STEP,
                {
                    "name": "step",
                    "inputs": {"parameters": [{"name": "p"}]},
                    "containerSet": {"containers": [{"name": "main", "image": "x"}]},
                },
            ),
        ),
        f"{STEP}.containerSet.containers[0].dependencies",
        "dependency 'ghost' not defined",
        "TestInvalidContainerSetDependencyNotFound",
    ),
    Case(
        "retryPolicy known",
        put(f"{STEP}.retryStrategy", {"retryPolicy": "Sometimes"}),
        put(f"{STEP}.retryStrategy", {"retryPolicy": "OnTransientError"}),
        f"{STEP}.retryStrategy.retryPolicy",
        "Sometimes is not a valid RetryPolicy",
    ),
    # --- artifacts and outputs (validateInputs, validateOutputs, validateOutputParameter) ---
    Case(
        "artifact paths stay inside",
        both(put(f"{STEP}.outputs.artifacts", [{"name": "r", "path": "/tmp/a/../../etc"}])),
        put(f"{STEP}.outputs.artifacts", [{"name": "r", "path": "/tmp/a/../a/b"}]),
        f"{STEP}.outputs.artifacts[0].path",
        "Directory traversal is not permitted",
    ),
    Case(
        "no artifact path on a DAG",
        both(
            put(f"{MAIN}.inputs", {"artifacts": [{"name": "in", "path": "/x"}]}),
            put("spec.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
        ),
        both(
            put(f"{MAIN}.inputs", {"artifacts": [{"name": "in"}]}),
            put("spec.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
        ),
        f"{MAIN}.inputs.artifacts[0].path",
        "only valid in container/script templates",
    ),
    Case(
        "no `from` on inputs",
        put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in", "from": "{{x}}"}]),
        both(put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in", "optional": True}])),
        f"{STEP}.inputs.artifacts[0].from",
        "from not valid in inputs",
    ),
    Case(
        "output parameter has a source",
        put(f"{STEP}.outputs.parameters[0].valueFrom", {}),
        unchanged,
        f"{STEP}.outputs.parameters[0].valueFrom",
        "valueFrom type unspecified",
        "TestInvalidOutputParam",
    ),
    Case(
        "output parameter has one source",
        put(f"{STEP}.outputs.parameters[0].valueFrom", {"path": "/tmp/o", "parameter": "x"}),
        unchanged,
        f"{STEP}.outputs.parameters[0].valueFrom",
        "multiple valueFrom types",
        "TestInvalidOutputParam",
    ),
    Case(
        "a container output reads a path",
        put(f"{STEP}.outputs.parameters[0].valueFrom", {"parameter": "x"}),
        unchanged,
        f"{STEP}.outputs.parameters[0].valueFrom",
        "path must be specified for Container",
        "TestInvalidOutputParam",
    ),
    Case(
        "a DAG output reads a parameter",
        put(f"{MAIN}.outputs", {"parameters": [{"name": "o", "valueFrom": {"path": "/o"}}]}),
        put(f"{MAIN}.outputs", {"parameters": [DAG_OUTPUT]}),
        f"{MAIN}.outputs.parameters[0].valueFrom",
        "parameter or expression must be specified",
        "TestInvalidOutputParam",
    ),
    # --- arguments (validateArguments, ProcessArgs) ----------------------------------------
    Case(
        "argument values required",
        put(f"{TASK_A}.arguments.parameters[0]", {"name": "p"}),
        unchanged,
        f"{TASK_A}.arguments.parameters[0]",
        "p.value or p.valueFrom is required",
        "TestInvalidArgumentNoValue",
    ),
    Case(
        "workflow argument values required",
        drop("spec.arguments.parameters[0].value"),
        unchanged,
        "spec.arguments.parameters[0]",
        "known.value or known.valueFrom is required",
        "TestParamWithoutValue",
    ),
    Case(
        "workflow argument values optional in lint",
        drop("spec.arguments.parameters[0].value"),
        drop("spec.arguments.parameters[0].value"),
        "spec.arguments.parameters[0]",
        "is required",
        "TestParamWithoutValue",
        options=Options(lint=True),
    ),
    Case(
        "enum holds the value",
        put("spec.arguments.parameters[0].enum", ["2", "3"]),
        put("spec.arguments.parameters[0].enum", ["1", "2"]),
        "spec.arguments.parameters[0].value",
        "should be present in known.enum list",
        "TestWorkflowTemplateWithArgumentValueNotFromEnumList",
    ),
    Case(
        "argument artifacts have a source",
        both(
            put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in"}]),
            put(f"{TASK_A}.arguments.artifacts", [{"name": "in"}]),
            put(f"{TASK_B}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
        ),
        both(
            put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in"}]),
            put(f"{TASK_A}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
            put(f"{TASK_B}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
        ),
        f"{TASK_A}.arguments.artifacts[0]",
        "from, artifact location, or key is required",
        "TestInvalidArgumentNoFromOrLocation",
    ),
    Case(
        "inputs get a value",
        put(f"{TASK_A}.arguments", {}),
        both(put(f"{TASK_A}.arguments", {}), put(f"{STEP}.inputs.parameters[0].default", "d")),
        TASK_A,
        "templates.step inputs.parameters.p had no value",
        "TestGlobalParam",
    ),
    Case(
        "required input artifacts supplied",
        both(
            put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in"}]),
            put(f"{TASK_B}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
        ),
        both(
            put(f"{STEP}.inputs.artifacts", [{"name": "in", "path": "/in", "optional": True}]),
            put(f"{TASK_B}.arguments.artifacts", [{"name": "in", "raw": {"data": "x"}}]),
        ),
        TASK_A,
        "inputs.artifacts.in was not supplied",
    ),
    Case(
        "a task argument names an upstream task",
        drop(f"{TASK_B}.depends"),
        unchanged,
        f"{TASK_B}.arguments.parameters[0].value",
        "missing dependency 'a' for parameter 'p'",
    ),
    # --- DAG structure (validateDAG, sortDAGTasks, ValidateTaskResults) --------------------
    Case(
        "depends and dependencies not mixed",
        put(
            f"{MAIN}.dag.tasks[2]",
            {"name": "c", "template": "step", "dependencies": ["a"], "arguments": _p("x")},
        ),
        put(
            f"{MAIN}.dag.tasks[2]",
            {"name": "c", "template": "step", "depends": "a", "arguments": _p("x")},
        ),
        f"{MAIN}.dag.tasks[2].dependencies",
        "cannot use both 'depends' and 'dependencies'",
        "TestDAGDependsAndDependencies",
    ),
    Case(
        ".AnySucceeded only on expanding tasks",
        put(f"{TASK_B}.depends", "a.AnySucceeded"),
        both(
            put(f"{MAIN}.dag.tasks[0]", {**FANNED, "name": "a"}),
            put(f"{TASK_B}.depends", "a.AnySucceeded"),
            put(f"{TASK_B}.arguments", _p("x")),
        ),
        f"{TASK_B}.depends",
        "uses an items-based condition",
        "TestAnySucceededAllFailed...",
    ),
    Case(
        "known task results",
        put(f"{TASK_B}.depends", "a.Completed"),
        put(f"{TASK_B}.depends", "a.Succeeded || a.Skipped"),
        f"{TASK_B}.depends",
        "task result 'Completed' for task 'a' is invalid",
        "TestDAGDependsInvalidResult",
    ),
    Case(
        "no digit-first names with depends",
        both(
            put(f"{TASK_A}.name", "1a"),
            put(f"{TASK_B}.depends", "1a"),
            put(f"{TASK_B}.arguments", _p("{{tasks.1a.outputs.parameters.out}}")),
        ),
        both(
            put(f"{TASK_A}.name", "a1"),
            put(f"{TASK_B}.depends", "a1"),
            put(f"{TASK_B}.arguments", _p("{{tasks.a1.outputs.parameters.out}}")),
        ),
        f"{TASK_A}.name",
        "cannot begin with a digit",
        "TestDAGNumericTaskName",
    ),
    Case(
        "no continueOn with depends",
        put(f"{TASK_A}.continueOn", {"failed": True}),
        put(f"{TASK_B}.depends", "a.Succeeded || a.Failed"),
        f"{TASK_A}.continueOn",
        "cannot use 'continueOn' when using 'depends'",
    ),
    Case(
        "no dependency cycle",
        put(f"{TASK_A}.depends", "b"),
        unchanged,
        f"{MAIN}.dag.tasks",
        "sorting failed: graph with cycle",
        "TestDAGCycle",
    ),
    Case(
        "dependencies exist",
        put(f"{TASK_B}.depends", "a && ghost"),
        unchanged,
        f"{MAIN}.dag.tasks",
        "sorting failed: invalid dependency ghost",
        "TestDAGUndefinedDependency",
    ),
    Case(
        "at least one task",
        put(f"{MAIN}.dag.tasks", []),
        unchanged,
        f"{MAIN}.dag.tasks",
        "must have at least one task",
    ),
    Case(
        "targets exist",
        put(f"{MAIN}.dag.target", "a ghost"),
        put(f"{MAIN}.dag.target", "b"),
        f"{MAIN}.dag.target",
        "target 'ghost' is not defined",
        "TestDAGTargetMissingInputParam",
    ),
    Case(
        "one fan-out kind",
        put(f"{MAIN}.dag.tasks[2]", {**FANNED, "withItems": ["x"]}),
        put(f"{MAIN}.dag.tasks[2]", FANNED),
        f"{MAIN}.dag.tasks[2]",
        "only one of withItems, withParam, withSequence",
    ),
    Case(
        "withSequence count or end",
        put(f"{MAIN}.dag.tasks[2]", {**FANNED, "withSequence": {"count": "2", "end": "3"}}),
        put(f"{MAIN}.dag.tasks[2]", {**FANNED, "withSequence": {"start": "1", "end": "3"}}),
        f"{MAIN}.dag.tasks[2]",
        "only one of count or end",
    ),
    Case(
        "hooks need an expression",
        put(f"{TASK_A}.hooks", {"running": {"template": "step", "arguments": _p("x")}}),
        put(
            f"{TASK_A}.hooks",
            {
                "running": {
                    "template": "step",
                    "arguments": _p("x"),
                    "expression": "tasks.a.status == 'Running'",
                }
            },
        ),
        f"{TASK_A}.hooks.running",
        "running Expression required",
    ),
    # --- variables (resolveAllVariables, addOutputsToScope, addItemsToScope) ---------------
    Case(
        "input variables declared",
        put(f"{STEP}.container.args[0]", "{{inputs.parameters.q}}"),
        unchanged,
        f"{STEP}.container.args[0]",
        "failed to resolve {{inputs.parameters.q}}",
        "TestUnresolved",
    ),
    Case(
        "variables in fields the engine ignores",
        put(
            f"{STEP}.metrics",
            {
                "prometheus": [
                    {**METRIC, "labels": [{"key": "k", "value": "{{workflow.parameters.typo}}"}]}
                ]
            },
        ),
        put(
            f"{STEP}.metrics",
            {
                "prometheus": [
                    {**METRIC, "labels": [{"key": "k", "value": "{{workflow.parameters.known}}"}]}
                ]
            },
        ),
        f"{STEP}.metrics.prometheus[0].labels[0].value",
        "failed to resolve {{workflow.parameters.typo}}",
    ),
    Case(
        "pod metadata variables",
        put(f"{STEP}.metadata", {"labels": {"run": "{{workflow.labels.missing}}"}}),
        both(
            put(f"{STEP}.metadata", {"labels": {"run": "{{workflow.labels.team}}"}}),
            put("metadata.labels", {"team": "ml"}),
        ),
        f"{STEP}.metadata.labels.run",
        "failed to resolve {{workflow.labels.missing}}",
    ),
    Case(
        "aggregated outputs only for withItems/withParam",
        both(
            put(f"{MAIN}.dag.tasks[2]", FANNED),
            put(
                f"{MAIN}.dag.tasks[3]",
                {
                    "name": "all",
                    "template": "step",
                    "depends": "fan",
                    "arguments": _p("{{tasks.fan.outputs.parameters}}"),
                },
            ),
        ),
        both(
            put(f"{MAIN}.dag.tasks[2]", {**ITEMS, "withParam": '["0","1"]'}),
            put(
                f"{MAIN}.dag.tasks[3]",
                {
                    "name": "all",
                    "template": "step",
                    "depends": "fan",
                    "arguments": _p("{{tasks.fan.outputs.parameters}}"),
                },
            ),
        ),
        f"{MAIN}.dag.tasks[3].arguments.parameters[0].value",
        "failed to resolve {{tasks.fan.outputs.parameters}}",
        "argo#10990",
    ),
    Case(
        "status of ancestors only",
        put(f"{TASK_A}.when", "{{tasks.b.status}} == Succeeded"),
        put(f"{TASK_B}.when", "{{tasks.a.status}} == Succeeded"),
        f"{TASK_A}.when",
        "failed to resolve {{tasks.b.status}}",
        "TestStepStatusReferenceNoFutureReference",
    ),
    Case(
        "item keys exist",
        put(
            f"{MAIN}.dag.tasks[2]",
            {**ITEMS, "withItems": ["x"], "arguments": _p("{{item.name}}")},
        ),
        put(
            f"{MAIN}.dag.tasks[2]",
            {**ITEMS, "withItems": [{"name": "x"}], "arguments": _p("{{item.name}}")},
        ),
        f"{MAIN}.dag.tasks[2].arguments.parameters[0].value",
        "failed to resolve {{item.name}}",
        "TestStepWithItemParam",
    ),
    Case(
        "workflow.failures only in exit handlers",
        both(
            put(f"{STEP}.container.args[0]", "{{workflow.failures}}"),
            put("spec.onExit", "exit"),
            put("spec.templates[2]", {"name": "exit", "container": {"image": "x"}}),
        ),
        both(
            put("spec.onExit", "exit"),
            put(
                "spec.templates[2]",
                {"name": "exit", "container": {"image": "x", "args": ["{{workflow.failures}}"]}},
            ),
        ),
        f"{STEP}.container.args[0]",
        "failed to resolve {{workflow.failures}}",
        "TestExitHandler",
    ),
    Case(
        "tags closed",
        put(f"{STEP}.container.args[0]", "{{inputs.parameters.p"),
        unchanged,
        f"{STEP}.container.args[0]",
        "cannot find end tag",
    ),
    # --- references (validateTemplateHolder) ------------------------------------------------
    Case(
        "templates exist",
        put(f"{TASK_A}.template", "ghost"),
        unchanged,
        f"{TASK_A}.template",
        "template name 'ghost' undefined",
    ),
    Case(
        "templateRefs resolve",
        put(
            f"{TASK_A}",
            {"name": "a", "arguments": _p("x"), "templateRef": {"name": "lib", "template": "x"}},
        ),
        unchanged,
        f"{TASK_A}.templateRef",
        "template reference lib.x not found",
        "TestUndefinedTemplateRef",
    ),
    Case(
        "entrypoint required",
        drop("spec.entrypoint"),
        unchanged,
        "spec.entrypoint",
        "spec.entrypoint is required",
    ),
    Case(
        "no templates beside a workflowTemplateRef",
        put("spec.workflowTemplateRef", {"name": "lib"}),
        unchanged,
        "spec.templates",
        "Templates is invalid field in spec",
    ),
    # --- workflow-level (podGC, metrics) ----------------------------------------------------
    Case(
        "podGC strategy known",
        put("spec.podGC", {"strategy": "OnPodFailure"}),
        put("spec.podGC", {"strategy": "OnPodSuccess"}),
        "spec.podGC.strategy",
        "unknown strategy 'OnPodFailure'",
    ),
    Case(
        "metric names",
        put(f"{STEP}.metrics", {"prometheus": [{**METRIC, "name": "a-b"}]}),
        put(f"{STEP}.metrics", {"prometheus": [METRIC]}),
        f"{STEP}.metrics.prometheus[0].name",
        "metric name 'a-b' is invalid",
        "TestInvalidMetricName",
    ),
    Case(
        "metric label keys",
        put(
            f"{STEP}.metrics",
            {"prometheus": [{**METRIC, "labels": [{"key": "a.b", "value": "v"}]}]},
        ),
        put(
            f"{STEP}.metrics",
            {"prometheus": [{**METRIC, "labels": [{"key": "a_b", "value": "v"}]}]},
        ),
        f"{STEP}.metrics.prometheus[0].labels[0].key",
        "metric label 'a.b' is invalid",
        "TestInvalidMetricLabelName",
    ),
    Case(
        "metric help",
        put(f"{STEP}.metrics", {"prometheus": [{**METRIC, "help": ""}]}),
        put(f"{STEP}.metrics", {"prometheus": [METRIC]}),
        f"{STEP}.metrics.prometheus[0].help",
        "must contain a help string",
        "TestInvalidMetricHelp",
    ),
    Case(
        "no realtime resourcesDuration",
        put(
            f"{STEP}.metrics",
            {
                "prometheus": [
                    {**METRIC, "gauge": {"value": "{{resourcesDuration.cpu}}", "realtime": True}}
                ]
            },
        ),
        put(
            f"{STEP}.metrics",
            {
                "prometheus": [
                    {**METRIC, "gauge": {"value": "{{resourcesDuration.cpu}}", "realtime": False}}
                ]
            },
        ),
        f"{STEP}.metrics.prometheus[0].gauge",
        "cannot be used in real-time",
        "TestRealtimeMetricResourcesDuration",
    ),
]


def _cron(schedules: list[str], **spec: Any) -> Change:
    def change(manifest: Manifest) -> None:
        workflow_spec = manifest.pop("spec")
        manifest["kind"] = "CronWorkflow"
        manifest["metadata"] = {"name": "nightly"}
        manifest["spec"] = {"schedules": schedules, "workflowSpec": workflow_spec, **spec}

    return change


CRON_PATH = "spec.workflowSpec"
CASES += [
    Case(
        "cron name <= 52",
        both(_cron(["0 3 * * *"]), put("metadata.name", "c" * 53)),
        both(_cron(["0 3 * * *"]), put("metadata.name", "c" * 52)),
        "metadata.name",
        "must not be more than 52 characters",
    ),
    Case(
        "cron schedules parse",
        _cron(["0 25 * * *"]),
        _cron(["0 3 * * MON-FRI", "@every 1h30m"]),
        "spec.schedules[0]",
        "cron schedule 0 25 * * * is malformed",
        "TestCronWorkflow...",
    ),
    Case(
        "cron timezone known",
        _cron(["@daily"], timezone="Mars/Olympus"),
        _cron(["@daily"], timezone="Europe/Paris"),
        "spec.timezone",
        "invalid timezone",
    ),
    Case(
        "cron concurrencyPolicy known",
        _cron(["@daily"], concurrencyPolicy="Sometimes"),
        _cron(["@daily"], concurrencyPolicy="Forbid"),
        "spec.concurrencyPolicy",
        "'Sometimes' is not a valid concurrencyPolicy",
    ),
    Case(
        "cron startingDeadlineSeconds >= 0",
        _cron(["@daily"], startingDeadlineSeconds=-1),
        _cron(["@daily"], startingDeadlineSeconds=0),
        "spec.startingDeadlineSeconds",
        "must be positive",
    ),
    Case(
        "cron workflow checked as a workflow",
        both(_cron(["@daily"]), put(f"{CRON_PATH}.templates[1].container.args[0]", "{{inputs.x}}")),
        _cron(["@daily"]),
        f"{CRON_PATH}.templates[1].container.args[0]",
        "failed to resolve {{inputs.x}}",
    ),
]


def _problems(manifest: Manifest, options: Options, library: list[Manifest] = []) -> list[Problem]:  # noqa: B006
    documents = Library(Document(document) for document in library)
    return validate_document(Document(manifest), documents, options)


@pytest.mark.parametrize("case", CASES, ids=[case.rule for case in CASES])
def test_each_rule_rejects_one_manifest_and_accepts_its_fix(case: Case) -> None:
    bad, good = base(), base()
    case.bad(bad)
    case.good(good)
    problems = _problems(bad, case.options)
    if case.options.lint and case.message == "is required":
        # The lint flavour: what a submission refuses, `argo lint` lets through.
        assert problems == [], problems
    else:
        assert any(p.path == case.path and case.message in p.message for p in problems), (
            f"expected {case.path}: {case.message}; got {[str(p) for p in problems]}"
        )
    assert _problems(good, case.options) == []
    assert schema_problems(good) == [], "the accepted manifest must be valid Argo"


def test_every_template_is_checked_reachable_or_not() -> None:
    manifest = base()
    manifest["spec"]["templates"].append(
        {"name": "orphan", "container": {"image": "x", "args": ["{{inputs.parameters.none}}"]}}
    )
    problems = _problems(manifest, Options())
    assert [p.path for p in problems] == ["spec.templates[2].container.args[0]"]


def test_a_workflow_template_alone_may_use_parameters_its_callers_supply() -> None:
    """validate.go: WorkflowTemplate validation accepts any `workflow.parameters.*`; a
    Workflow that runs it by workflowTemplateRef is held to its own arguments."""
    template = base()
    template["kind"] = "WorkflowTemplate"
    template["metadata"] = {"name": "lib"}
    template["spec"]["templates"][1]["container"]["args"][0] = "{{workflow.parameters.extra}}"
    assert _problems(template, Options()) == []
    run = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "run-"},
        "spec": {"workflowTemplateRef": {"name": "lib"}},
    }
    problems = _problems(run, Options(), [template])
    assert any("failed to resolve {{workflow.parameters.extra}}" in p.message for p in problems)
    run["spec"]["arguments"] = {"parameters": [{"name": "extra", "value": "1"}]}
    assert _problems(run, Options(), [template]) == []


def test_template_refs_resolve_from_the_other_documents() -> None:
    library = base()
    library["kind"] = "WorkflowTemplate"
    library["metadata"] = {"name": "lib"}
    manifest = base()
    manifest["spec"]["templates"][0]["dag"]["tasks"][0] = {
        "name": "a",
        "templateRef": {"name": "lib", "template": "step"},
        "arguments": _p("x"),
    }
    assert _problems(manifest, Options(), [library]) == []
    manifest["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"] = {}
    problems = _problems(manifest, Options(), [library])
    assert [str(p) for p in problems] == [
        "Workflow/rules-: spec.templates[0].dag.tasks[0]: templates.step inputs.parameters.p "
        "had no value"
    ]
