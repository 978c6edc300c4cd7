"""Rules on the shape of DAG and steps templates (validate.go: validateDAG, sortDAGTasks,
validateDAGTargets, validateSteps, validateHooks; common/ancestry.go: GetTaskDependencies,
ValidateTaskResults, GetTaskAncestry).

These need no other template: names, dependencies, `depends` results, targets. What a task
may reference, and the templates it runs, are checked by the traversal (workflow.py).
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from workflows.engine.validate.names import field_name_errors, is_parameter, named_list_errors
from workflows.engine.validate.problem import items, mapping, text

Found = Iterator[tuple[str, str]]

TASK_RESULTS = frozenset(
    {
        "Succeeded",
        "Failed",
        "Errored",
        "Skipped",
        "Omitted",
        "Daemoned",
        "AnySucceeded",
        "AllFailed",
    }
)
"""common.ValidateTaskResults: what `depends` may test (`.Completed` is not among them)."""
ITEM_RESULTS = frozenset({"AnySucceeded", "AllFailed"})
_TASK_OR_RESULT = re.compile(
    r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)|([a-zA-Z0-9][-a-zA-Z0-9]*)"
)
_TASK_RESULT = re.compile(r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)")
_TAG = re.compile(r"\{\{.*?\}\}")


def expands(task: Mapping[str, Any]) -> bool:
    return (
        bool(task.get("withItems"))
        or bool(text(task.get("withParam")))
        or task.get("withSequence") is not None
    )


def aggregates(task: Mapping[str, Any]) -> bool:
    """Only withItems/withParam fan-outs aggregate outputs (validate.go's `aggregate`)."""
    return bool(task.get("withItems")) or bool(text(task.get("withParam")))


def dependencies(task: Mapping[str, Any]) -> dict[str, bool]:
    """GetTaskDependencies: task name -> whether `depends` tests it for .AnySucceeded/.AllFailed."""
    depends = text(task.get("depends"))
    if not depends:
        return dict.fromkeys((text(name) for name in task.get("dependencies") or []), False)
    found: dict[str, bool] = {}
    for match in _TASK_OR_RESULT.finditer(depends):
        if match.group(1):
            name, result = match.group(1).split(".", 1)
            found[name] = found.get(name, False) or result in ITEM_RESULTS
        else:
            found[match.group(2)] = found.get(match.group(2), False)
    return found


def ancestry(tasks: Mapping[str, Mapping[str, Any]], name: str) -> list[str]:
    """GetTaskAncestry: every task `name` transitively depends on."""
    seen: list[str] = []
    pending = list(dependencies(tasks.get(name, {})))
    while pending:
        current = pending.pop()
        if current in seen or current not in tasks:
            continue
        seen.append(current)
        pending.extend(dependencies(tasks[current]))
    return seen


def sorted_tasks(tasks: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], str | None]:
    """sortDAGTasks (util/sorting): tasks in dependency order, or why they cannot be sorted."""
    by_name: dict[str, Mapping[str, Any]] = {}
    for task in tasks:
        name = text(task.get("name"))
        if name in by_name:
            return list(tasks), f"duplicated nodeName {name}"
        by_name[name] = task
    for task in tasks:
        for dependency in dependencies(task):
            if dependency not in by_name:
                return list(tasks), f"invalid dependency {dependency}"
    ordered: list[Mapping[str, Any]] = []
    done: set[str] = set()
    remaining = dict(by_name)
    while remaining:
        ready = [n for n, t in remaining.items() if set(dependencies(t)) <= done]
        if not ready:
            return list(tasks), "graph with cycle"
        for name in ready:
            ordered.append(remaining.pop(name))
            done.add(name)
    return ordered, None


def dag_problems(dag: Mapping[str, Any]) -> Found:
    """validateDAG's structural rules, each at the task it concerns (path relative to `dag`)."""
    tasks = items(dag.get("tasks"))
    if not tasks:
        yield "tasks", "must have at least one task"
        return
    _, unsortable = sorted_tasks(tasks)
    if unsortable:
        yield "tasks", f"sorting failed: {unsortable}"
        return
    for index, reason in named_list_errors(tasks, parameters=False):
        yield f"tasks[{index}]", reason
    by_name = {text(task.get("name")): task for task in tasks}
    using_depends = any(text(task.get("depends")) for task in tasks)
    for index, task in enumerate(tasks):
        where = f"tasks[{index}]"
        name = text(task.get("name"))
        chained = using_depends or bool(task.get("dependencies"))
        if chained and name[:1].isdigit():
            yield (
                f"{where}.name",
                f"tasks.{name} name cannot begin with a digit when using either 'depends' "
                "or 'dependencies'",
            )
        if using_depends and task.get("dependencies"):
            yield (
                f"{where}.dependencies",
                "cannot use both 'depends' and 'dependencies' in the same DAG template",
            )
        if using_depends and task.get("continueOn") is not None:
            yield (
                f"{where}.continueOn",
                "cannot use 'continueOn' when using 'depends'. "
                "Instead use 'dep-task.Failed'/'dep-task.Errored'",
            )
        for match in _TASK_RESULT.finditer(text(task.get("depends"))):
            dependency, result = match.group(1).split(".", 1)
            if result not in TASK_RESULTS:
                yield (
                    f"{where}.depends",
                    f"task result '{result}' for task '{dependency}' is invalid",
                )
        # Sorting succeeded, so every dependency names a task of this DAG.
        for dependency, items_result in dependencies(task).items():
            if items_result and not expands(by_name[dependency]):
                yield (
                    f"{where}.depends",
                    f"dependency '{dependency}' uses an items-based condition such as "
                    ".AnySucceeded or .AllFailed but does not contain any items",
                )
        yield from hook_problems(task.get("hooks"), where)
    for target in text(dag.get("target")).split(" ") if text(dag.get("target")) else []:
        if not is_parameter(target) and target not in by_name:
            yield "target", f"target '{target}' is not defined"


def step_name_problems(groups: Sequence[Sequence[Mapping[str, Any]]]) -> Found:
    """validateSteps' naming: each step named, once, validly (variables count as one letter)."""
    seen: set[str] = set()
    for group_index, group in enumerate(groups):
        for step_index, step in enumerate(group):
            where = f"[{group_index}][{step_index}]"
            name = text(step.get("name"))
            if not name:
                yield f"{where}.name", "name is required"
                continue
            if name in seen:
                yield f"{where}.name", f"name '{name}' is not unique"
            errors = field_name_errors(_TAG.sub("x", name))
            if errors:
                yield f"{where}.name", f"name '{name}' is invalid: {';'.join(errors)}"
            seen.add(name)
            yield from hook_problems(step.get("hooks"), where)


def step_groups(steps: object) -> list[list[Mapping[str, Any]]]:
    """`steps` is a list of parallel groups, each a list of steps."""
    if not isinstance(steps, list):
        return []
    return [items(group) for group in steps]


def hook_problems(hooks: object, where: str) -> Found:
    """validateHooks: every hook but `exit` needs an expression."""
    for name, hook in mapping(hooks).items():
        if name != "exit" and not text(mapping(hook).get("expression")):
            yield f"{where}.hooks.{name}", f"{name} Expression required"
