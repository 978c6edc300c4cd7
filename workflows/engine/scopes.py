"""Which `{{...}}` names each place of a template may use, checked before a run starts.

Argo resolves variables in two scopes: a DAG task's fields see the DAG's inputs, the outputs
of the tasks it (transitively) depends on and, when fanned out, `{{item}}`; a template's own
fields see its inputs, its declared paths and `{{pod.name}}`. Checking every string against
those scopes up front turns a typo into an error naming it instead of a half-finished run.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from workflows.engine.errors import ManifestError, VariableError
from workflows.engine.model import DagTask, Template
from workflows.engine.variables import CREATION_TIMESTAMP, TAG, has_tags, tags

GLOBAL_NAMES = frozenset(
    {"workflow.name", "workflow.uid", "workflow.namespace", CREATION_TIMESTAMP}
)
EXIT_NAMES = frozenset({"workflow.status", "workflow.failures"})
"""Only templates run by `spec.onExit` see how the workflow ended."""
LOCAL_IP = "127.0.0.1"
LITERAL_TASK_FIELDS = frozenset({"name", "template", "templateRef", "depends", "dependencies"})


@dataclass(frozen=True)
class DagView:
    """A DAG's tasks as the check needs them: direct dependencies and the template run."""

    dependencies: Mapping[str, set[str]]
    targets: Mapping[str, Template]
    fanned_out: frozenset[str] = frozenset()

    def ancestors(self, task: str) -> set[str]:
        return ancestors(self.dependencies, task)


def ancestors(dependencies: Mapping[str, set[str]], task: str) -> set[str]:
    """Every task `task` transitively depends on: the tasks whose outputs it may use."""
    seen: set[str] = set()
    stack = list(dependencies[task])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(dependencies[name])
    return seen


def global_names(parameters: Iterable[str]) -> frozenset[str]:
    return GLOBAL_NAMES | {f"workflow.parameters.{name}" for name in parameters}


def check_template(template: Template, where: str, globals_: frozenset[str], dag: DagView) -> None:
    """Raise VariableError for the first `{{...}}` in `template` that would not resolve."""
    inputs = {f"inputs.parameters.{p.name}" for p in template.inputs.parameters}
    retries = {"retries"} if template.retry_strategy else set()
    _check(template.inputs, f"{where}.inputs", _known(globals_))
    if template.retry_strategy is not None:
        _check(template.retry_strategy, f"{where}.retryStrategy", _known(globals_ | inputs))
    own = globals_ | inputs | retries
    if template.memoize is not None:
        _check(template.memoize, f"{where}.memoize", _known(globals_ | inputs))
    if template.container is not None:
        paths = {f"inputs.artifacts.{a.name}.path" for a in template.inputs.artifacts}
        paths |= {f"outputs.artifacts.{a.name}.path" for a in template.outputs.artifacts}
        paths |= {f"outputs.parameters.{p.name}.path" for p in template.outputs.parameters}
        known = _known(own | paths | {"pod.name"})
        _check(template.container, f"{where}.container", known)
        _check(template.outputs, f"{where}.outputs", known)
        if isinstance(template.active_deadline_seconds, str):
            _check_text(template.active_deadline_seconds, f"{where}.activeDeadlineSeconds", known)
        return
    assert template.dag is not None
    input_artifacts = {f"inputs.artifacts.{a.name}" for a in template.inputs.artifacts}
    for index, task in enumerate(template.dag.tasks):
        visible = dag.ancestors(task.name)
        values, artifacts = _task_names(visible, dag)
        known = _known(own | values, item=task.fans_out)
        _check_task(task, f"{where}.dag.tasks[{index}]", known, _known(input_artifacts | artifacts))
    values, artifacts = _task_names(set(dag.targets), dag)
    known = _known(own | values)
    for index, parameter in enumerate(template.outputs.parameters):
        text = str(parameter.value_from.parameter)
        _check_text(text, f"{where}.outputs.parameters[{index}].valueFrom.parameter", known)
    for index, artifact in enumerate(template.outputs.artifacts):
        _check_reference(
            str(artifact.from_),
            f"{where}.outputs.artifacts[{index}].from",
            _known(input_artifacts | artifacts),
        )


def check_key_format(key_format: str, globals_: frozenset[str]) -> None:
    _check_text(key_format, "EngineContext.key_format", _known(globals_ | {"pod.name"}))


def _task_names(tasks: set[str], dag: DagView) -> tuple[set[str], set[str]]:
    """(`{{tasks.X...}}` values, `tasks.X.outputs.artifacts.Y` references) of these tasks."""
    values: set[str] = set()
    artifacts: set[str] = set()
    for name in tasks:
        target = dag.targets[name]
        prefix = f"tasks.{name}"
        values |= {f"{prefix}.ip", f"{prefix}.status", f"{prefix}.id"}
        values |= {f"{prefix}.outputs.parameters.{p.name}" for p in target.outputs.parameters}
        if name in dag.fanned_out:
            values.add(f"{prefix}.outputs.parameters")
        else:
            artifacts |= {f"{prefix}.outputs.artifacts.{a.name}" for a in target.outputs.artifacts}
    return values, artifacts


@dataclass(frozen=True)
class Known:
    """The names visible at one place (plus `item.*` in a fanned-out task)."""

    names: frozenset[str]
    item: bool = False

    def __contains__(self, name: str) -> bool:
        if name in self.names:
            return True
        if self.item and (name == "item" or name.startswith("item.")):
            return True
        if name.startswith(CREATION_TIMESTAMP + ".") and CREATION_TIMESTAMP in self.names:
            part = name.removeprefix(CREATION_TIMESTAMP + ".")
            return part == "RFC3339" or (len(part) == 1 and part.isalpha())
        return False

    def hint(self, name: str) -> str:
        parts = name.split(".")
        for depth in (2, 1):
            prefix = ".".join(parts[:depth]) + "."
            similar = sorted(n for n in self.names if n.startswith(prefix))
            if similar:
                return "known here: " + ", ".join(similar)
        return ""


def _known(names: Iterable[str], item: bool = False) -> Known:
    return Known(frozenset(names), item)


def _check_task(task: DagTask, where: str, known: Known, references: Known) -> None:
    dumped = task.model_dump(by_alias=True, exclude_none=True)
    for key, value in dumped.items():
        for path, text in _strings(value, f"{where}.{key}"):
            if key in LITERAL_TASK_FIELDS and has_tags(text):
                raise ManifestError(f"{path}: variables are not substituted in {key}")
            if key == "arguments" and path.endswith(".from"):
                _check_reference(text, path, references)
            elif key not in LITERAL_TASK_FIELDS:
                _check_text(text, path, known)


def _check_reference(text: str, where: str, known: Known) -> None:
    """An artifact `from` is exactly one `{{...}}` naming an artifact."""
    match = TAG.fullmatch(text.strip())
    if match is None:
        raise ManifestError(f"{where}: expected one {{{{...}}}} naming an artifact, got {text!r}")
    _check_text(text, where, known)


def _check(model: BaseModel, where: str, known: Known) -> None:
    for path, text in _strings(model.model_dump(by_alias=True, exclude_none=True), where):
        _check_text(text, path, known)


def _check_text(text: str, where: str, known: Known) -> None:
    for name in tags(text):
        if name.startswith("="):
            raise ManifestError(f"{where}: expression tags {{{{=...}}}} are not supported locally")
        if name not in known:
            raise VariableError(name, where, known.hint(name))


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from _strings(child, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, child in enumerate(value):
            yield from _strings(child, f"{path}[{index}]")
