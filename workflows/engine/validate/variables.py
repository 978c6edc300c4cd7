"""Unresolved `{{...}}` variables, as Argo's validator finds them (validate.go:
resolveAllVariables, addOutputsToScope, addItemsToScope; util/template's Validate).

Argo checks every string of a leaf template (container, metrics, metadata, memoize: all of
it), of each DAG task and step, of DAG targets and of every template's outputs. Only names
under a workflow root (`item.`, `steps.`, `inputs.`, `outputs.`, `pod.`, `workflow.`,
`tasks.`) are checked; expression tags `{{=...}}` are not. A checked name must be in the
scope of its place, or under one of the prefixes Argo resolves only at run time.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.engine.validate.names import is_parameter
from workflows.engine.validate.problem import items, mapping, text

START, END = "{{", "}}"
CHECKED_ROOTS = ("item.", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.")
"""common.GlobalVarValidWorkflowVariablePrefix: tags under other roots are never checked."""
RUNTIME_PREFIXES = (
    "outputs.",
    "workflow.creationTimestamp",
    "workflow.scheduledTime",
    "workflow.duration",
    "tasks.name",
    "steps.name",
    "node.name",
)
"""Prefixes resolveAllVariables lets through: their values exist only while running."""
ANY_ITEM = "item.*"
ANY_OUTPUT_PARAMETER = "workflow.outputs.parameters.*"
ANY_OUTPUT_ARTIFACT = "workflow.outputs.artifacts.*"
RETRY_NAMES = (
    "retries",
    "lastRetry.exitCode",
    "lastRetry.status",
    "lastRetry.duration",
    "lastRetry.message",
)


class UnclosedTag(ValueError):
    """fasttemplate's `cannot find end tag`: a `{{` without its `}}`."""


def tags(value: str) -> Iterator[str]:
    """Each tag as fasttemplate splits it: from `{{` to the next `}}`, untrimmed."""
    position = 0
    while (start := value.find(START, position)) >= 0:
        end = value.find(END, start + len(START))
        if end < 0:
            raise UnclosedTag(f'cannot find end tag="}}}}" in the template="{value[:80]}"')
        yield value[start + len(START) : end]
        position = end + len(END)


def strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(path, string) for every key and value inside a manifest fragment."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and START in key:
                yield child_path, key
            yield from strings(child, child_path)
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from strings(child, f"{path}[{index}]")


@dataclass
class Globals:
    """templateValidationCtx.globalParams: names visible in every template of one validation."""

    names: set[str] = field(default_factory=set)
    template_validation: bool = False
    """Validating a WorkflowTemplate alone: any `workflow.parameters*` may come from its caller."""


def unresolved(tag: str, scope: set[str], globals_: Globals) -> bool:
    """resolveAllVariables' verdict on one tag."""
    name = tag.strip()
    if tag.startswith("=") or not name.startswith(CHECKED_ROOTS):
        return False
    if name in scope or name in globals_.names:
        return False
    known_anywhere = scope | globals_.names
    if (name == "item" or name.startswith("item.")) and ANY_ITEM in known_anywhere:
        return False
    if name.startswith("workflow.outputs.parameters.") and ANY_OUTPUT_PARAMETER in known_anywhere:
        return False
    if name.startswith("workflow.outputs.artifacts.") and ANY_OUTPUT_ARTIFACT in known_anywhere:
        return False
    if name.startswith(RUNTIME_PREFIXES):
        return False
    return not (globals_.template_validation and name.startswith("workflow.parameters"))


def unresolved_in(
    fragment: object, path: str, scope: set[str], globals_: Globals
) -> list[tuple[str, str]]:
    """(path, message) for each unresolvable or unclosed tag in a manifest fragment."""
    found = []
    for where, value in strings(fragment, path):
        try:
            for tag in tags(value):
                if unresolved(tag, scope, globals_):
                    hint = _similar(tag.strip(), scope | globals_.names)
                    found.append((where, f"failed to resolve {{{{{tag}}}}}{hint}"))
        except UnclosedTag as error:
            found.append((where, str(error)))
    return found


def _similar(name: str, known: set[str]) -> str:
    """Argo's message plus the names that were meant, most likely: same first parts."""
    parts = name.split(".")
    for depth in (2, 1):
        prefix = ".".join(parts[:depth]) + "."
        similar = sorted(n for n in known if n.startswith(prefix) and not n.endswith("*"))
        if similar:
            return f"; known here: {', '.join(similar[:12])}"
    return ""


def template_scope(template: Mapping[str, Any], leaf: bool, pod: bool) -> set[str]:
    """validateInputs + validateTemplate: the names a template's own fields may use."""
    inputs = mapping(template.get("inputs"))
    parameters = items(inputs.get("parameters"))
    scope = {f"inputs.parameters.{text(p.get('name'))}" for p in parameters}
    if parameters:
        scope.add("inputs.parameters")
    for artifact in items(inputs.get("artifacts")):
        name = text(artifact.get("name"))
        scope.add(f"inputs.artifacts.{name}")
        if leaf:
            scope.add(f"inputs.artifacts.{name}.path")
    if pod:
        scope.add("pod.name")
    if template.get("retryStrategy") is not None:
        scope.update(RETRY_NAMES)
    if leaf:
        outputs = mapping(template.get("outputs"))
        for artifact in items(outputs.get("artifacts")):
            if text(artifact.get("path")):
                scope.add(f"outputs.artifacts.{text(artifact.get('name'))}.path")
        for parameter in items(outputs.get("parameters")):
            if text(mapping(parameter.get("valueFrom")).get("path")):
                scope.add(f"outputs.parameters.{text(parameter.get('name'))}.path")
    return scope


def add_outputs(
    scope: set[str],
    globals_: Globals,
    prefix: str,
    name: str,
    target: Mapping[str, Any] | None,
    *,
    aggregate: bool,
    ancestor: bool = False,
) -> None:
    """addOutputsToScope: what `{{tasks.<name>...}}` (or `steps.`) may read of a node.

    `aggregate` holds only for withItems/withParam: a withSequence fan-out adds no
    `.outputs.parameters` list, which is why a controller rejects reading one.
    """
    base = f"{prefix}.{name}"
    scope.update({f"{base}.id", f"{base}.startedAt", f"{base}.finishedAt", f"{base}.hostNodeName"})
    if target is None:
        return
    if target.get("daemon") is True:
        scope.add(f"{base}.ip")
    if has_output(target):
        scope.update({f"{base}.outputs.result", f"{base}.exitCode"})
    outputs = mapping(target.get("outputs"))
    for kind, any_name in (
        ("parameters", ANY_OUTPUT_PARAMETER),
        ("artifacts", ANY_OUTPUT_ARTIFACT),
    ):
        for output in items(outputs.get(kind)):
            scope.add(f"{base}.outputs.{kind}.{text(output.get('name'))}")
            global_name = text(output.get("globalName"))
            if not global_name:
                continue
            if is_parameter(global_name):
                scope.add(any_name)  # named at run time: any name is accepted
            else:
                lifted = f"workflow.outputs.{kind}.{global_name}"
                scope.add(lifted)
                globals_.names.add(lifted)
    if aggregate:
        if "script" in target or "containerSet" in target:
            scope.update({f"{base}.outputs.result", f"{base}.exitCode"})
        scope.add(f"{base}.outputs.parameters")
    if ancestor:
        scope.add(f"{base}.status")


def has_output(template: Mapping[str, Any]) -> bool:
    """Template.HasOutput: a main container whose result and exit code exist."""
    if any(
        template.get(kind) is not None for kind in ("container", "script", "data", "http", "plugin")
    ):
        return True
    containers = items(mapping(template.get("containerSet")).get("containers"))
    return any(text(c.get("name")) == "main" for c in containers)


def add_items(task: Mapping[str, Any], scope: set[str]) -> str | None:
    """addItemsToScope: `{{item...}}` names of a fan-out; the error when it is ill-formed."""
    with_items = task.get("withItems")
    with_param = text(task.get("withParam"))
    sequence = task.get("withSequence")
    defined = [bool(with_items), bool(with_param), sequence is not None]
    if sum(defined) > 1:
        return "only one of withItems, withParam, withSequence can be specified"
    if isinstance(with_items, list) and with_items:
        for item in with_items:
            if isinstance(item, Mapping):
                scope.update(f"item.{key}" for key in item)
            elif isinstance(item, list):
                scope.update(f"item.[{index}]" for index in range(len(item)))
            elif item is None:
                return f"unsupported withItems type: {item}"
            else:
                scope.add("item")
    elif with_param:
        scope.update({"item", ANY_ITEM})
    elif sequence is not None:
        sequence = mapping(sequence)
        if sequence.get("count") is not None and sequence.get("end") is not None:
            return "only one of count or end can be defined in withSequence"
        scope.add("item")
    return None
