"""Scheduling one DAG template: which task starts when, and how the DAG ends.

A task starts once every task its `depends` names is done (a daemon counts once ready);
if the expression is false it is Omitted. Independent tasks run concurrently, bounded by
the DAG's `parallelism` and the run's pod limit. Fail-fast (Argo's default): after a task
fails, and unless some `depends` expects that failure (`A.Failed`, `A.Completed`, `!A...`),
no new task starts; running ones finish. The DAG then fails if a failure reaches one of its
leaves through Omitted tasks (Argo's branch-phase rule), if it stopped early, or if a
daemon exited non-zero. Daemons are stopped when the DAG ends, whatever its phase.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import JsonValue

from steps.core.errors import StepError
from workflows.engine.artifacts import ArtifactRef, Packing, locate
from workflows.engine.container import Daemon
from workflows.engine.errors import ManifestError
from workflows.engine.expressions import (
    Depends,
    TaskResult,
    evaluate_depends,
    evaluate_when,
    failure_aware_tasks,
    referenced_tasks,
)
from workflows.engine.manifest import TemplateEntry
from workflows.engine.model import DagTask, DagTemplate, Sequence
from workflows.engine.naming import expanded_name, item_fields, item_value, node_id
from workflows.engine.result import NodeKind, NodePhase
from workflows.engine.retry import parse_count
from workflows.engine.runtime import Call, Outcome, RunState, TaskError
from workflows.engine.scopes import LOCAL_IP, ancestors
from workflows.engine.variables import TAG, Scope, json_text, substitute

Execute = Callable[[RunState, Call], Awaitable[Outcome]]
T = TypeVar("T")

_PHASE_RESULTS: Mapping[NodePhase, frozenset[TaskResult]] = {
    NodePhase.SUCCEEDED: frozenset({TaskResult.SUCCEEDED, TaskResult.COMPLETED}),
    NodePhase.FAILED: frozenset({TaskResult.FAILED, TaskResult.COMPLETED}),
    NodePhase.ERROR: frozenset({TaskResult.ERRORED, TaskResult.COMPLETED}),
    NodePhase.SKIPPED: frozenset({TaskResult.SKIPPED, TaskResult.COMPLETED}),
    NodePhase.OMITTED: frozenset({TaskResult.OMITTED}),
    NodePhase.DAEMONED: frozenset({TaskResult.DAEMONED}),
}


@dataclass
class _Task:
    """One DAG task's progress: decided phase, outputs, fan-out children."""

    task: DagTask
    entry: TemplateEntry
    node_name: str
    depends: Depends | None
    phase: NodePhase | None = None
    """None while undecided; Running once started; never set if fail-fast held it back."""
    outcome: Outcome | None = None
    children: list[Outcome] = field(default_factory=list)
    daemoned: bool = False

    @property
    def kind(self) -> NodeKind:
        return NodeKind.DAG if self.entry.template.dag is not None else NodeKind.POD

    @property
    def fulfilled(self) -> bool:
        return self.phase is not None and self.phase.fulfilled

    def results(self) -> frozenset[TaskResult]:
        assert self.phase is not None
        results = set(_PHASE_RESULTS.get(self.phase, frozenset()))
        if self.daemoned:
            results.add(TaskResult.DAEMONED)
        if self.task.fans_out:
            if any(child.phase is NodePhase.SUCCEEDED for child in self.children):
                results.add(TaskResult.ANY_SUCCEEDED)
            if self.children and all(c.phase is NodePhase.FAILED for c in self.children):
                results.add(TaskResult.ALL_FAILED)
        return frozenset(results)


async def run_dag(
    run: RunState,
    call: Call,
    scope: Scope,
    artifacts: Mapping[str, ArtifactRef],
    node_name: str,
    execute: Execute,
) -> Outcome:
    """Run the DAG of `call.entry` as node `node_name` (the boundary of its tasks' names)."""
    return await _Dag(run, call, scope, artifacts, node_name, execute).run()


class _Dag:
    def __init__(
        self,
        run: RunState,
        call: Call,
        scope: Scope,
        artifacts: Mapping[str, ArtifactRef],
        node_name: str,
        execute: Execute,
    ) -> None:
        template = call.entry.template
        assert template.dag is not None
        self.dag: DagTemplate = template.dag
        self.run_state = run
        self.call = call
        self.scope = scope
        self.input_artifacts = artifacts
        self.boundary = node_name
        self.execute = execute
        self.tasks: dict[str, _Task] = {}
        for task in self.dag.tasks:
            self.tasks[task.name] = _Task(
                task=task,
                entry=run.plan.resolve(call.entry.scope, task),
                node_name=f"{node_name}.{task.name}",
                depends=run.plan.task_depends(call.entry, task.name),
            )
        self.dependencies = {
            name: referenced_tasks(t.depends) if t.depends else set()
            for name, t in self.tasks.items()
        }
        self.expected_failures: set[str] = set()
        for state in self.tasks.values():
            if state.depends is not None:
                self.expected_failures |= failure_aware_tasks(state.depends)
        self.slots = asyncio.Semaphore(template.parallelism) if template.parallelism else None
        self.stopped = False
        self.failures: list[str] = []
        self.daemons: list[Daemon] = []
        self.daemon_failures: list[str] = []

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        pending = list(self.tasks)
        running: dict[asyncio.Task[None], str] = {}
        try:
            while True:
                self._schedule(pending, running)
                if not running:
                    break
                done, _ = await asyncio.wait(running.keys(), return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    del running[finished]
                    finished.result()  # an engine error (not a task failure) propagates
        finally:
            await _cancel(running.keys())
            await asyncio.gather(*(daemon.stop() for daemon in self.daemons))
        return self._conclude()

    def _schedule(self, pending: list[str], running: dict[asyncio.Task[None], str]) -> None:
        decided = True
        while decided:
            decided = False
            for name in list(pending):
                state = self.tasks[name]
                if not all(self.tasks[dep].fulfilled for dep in self.dependencies[name]):
                    continue
                if state.depends is not None and not evaluate_depends(
                    state.depends, lambda dep: self.tasks[dep].results()
                ):
                    pending.remove(name)
                    state.phase = NodePhase.OMITTED
                    condition = state.task.depends or " && ".join(state.task.dependencies or ())
                    omitted = Outcome(NodePhase.OMITTED, f"depends {condition!r} not met")
                    template = state.entry.template.name
                    self.run_state.settle(state.node_name, state.kind, template, omitted)
                    decided = True
                    continue
                if self.stopped:
                    continue
                pending.remove(name)
                state.phase = NodePhase.RUNNING
                running[asyncio.create_task(self._run_task(state))] = name

    def _note_failure(self, name: str) -> None:
        self.failures.append(name)
        if self.dag.fail_fast and name not in self.expected_failures:
            self.stopped = True

    # --- one task ------------------------------------------------------------------------

    async def _run_task(self, state: _Task) -> None:
        task = state.task
        template = state.entry.template.name
        try:
            scope = self._task_scope(state)
            if task.fans_out:
                where = self.run_state.path_of(state.node_name, task.name)
                items = self._items(task, scope, where)
                await self._run_group(state, scope, items)
                return
            call = await self._prepare(state, state.node_name, scope)
        except (ManifestError, TaskError, StepError) as error:
            state.phase = NodePhase.ERROR
            self.run_state.settle(
                state.node_name, state.kind, template, Outcome(NodePhase.ERROR, str(error))
            )
            self._note_failure(task.name)
            return
        if call is None:
            state.phase = NodePhase.SKIPPED
            return
        outcome = await self._invoke(task.name, call)
        if outcome is None:
            state.phase = None  # held back by fail-fast: never started
            return
        state.outcome = outcome
        state.phase = outcome.phase
        state.daemoned = outcome.phase is NodePhase.DAEMONED

    async def _prepare(self, state: _Task, node_name: str, scope: Scope) -> Call | None:
        """Substitute the task's arguments; None (and a Skipped node) when `when` is false."""
        task = state.task
        where = f"{self.run_state.path_of(node_name, task.name)}"
        if task.when is not None:
            condition = substitute(task.when, scope, f"{where}: when")
            if not evaluate_when(condition):
                skipped = Outcome(NodePhase.SKIPPED, f"when '{condition}' evaluated false")
                self.run_state.settle(node_name, state.kind, state.entry.template.name, skipped)
                return None
        parameters = {
            p.name: substitute(p.value, scope, f"{where}: arguments.parameters.{p.name}")
            for p in task.arguments.parameters
        }
        artifacts: dict[str, ArtifactRef] = {}
        for artifact in task.arguments.artifacts:
            if artifact.from_ is not None:
                artifacts[artifact.name] = self._artifact(artifact.from_, where)
            elif artifact.s3 is not None:
                key = substitute(artifact.s3.key, scope, f"{where}: arguments.artifacts")
                store = self.run_state.store
                artifacts[artifact.name] = await asyncio.to_thread(
                    locate, store, key, Packing.DETECT
                )
        return Call(state.entry, node_name, parameters, artifacts, self.call.globals)

    async def _invoke(self, name: str, call: Call) -> Outcome | None:
        async with self._slot(call.entry.template.daemon):
            if self.stopped:
                return None
            outcome = await self.execute(self.run_state, call)
        if outcome.daemon is not None:
            outcome.daemon.on_exit = lambda phase: self._daemon_exited(name, phase)
            self.daemons.append(outcome.daemon)
        if outcome.phase.failed:
            self._note_failure(name)
        return outcome

    def _daemon_exited(self, name: str, phase: NodePhase) -> None:
        state = self.tasks[name]
        if not state.task.fans_out:
            state.phase = phase
        if phase.failed:
            self.daemon_failures.append(name)
            self._note_failure(name)

    @contextlib.asynccontextmanager
    async def _slot(self, daemon: bool) -> AsyncIterator[None]:
        # Daemons hold no slot: they wait for dependants that need slots themselves.
        if daemon or self.slots is None:
            yield
            return
        async with self.slots:
            yield

    async def _run_group(self, state: _Task, scope: Scope, items: list[JsonValue]) -> None:
        """A fanned-out task: a TaskGroup node with one child per item."""
        run = self.run_state
        template = state.entry.template.name
        group = run.record(state.node_name, NodeKind.TASK_GROUP, template)
        run.begin(group)

        async def child(index: int, item: JsonValue) -> Outcome | None:
            name = f"{self.boundary}.{expanded_name(state.task.name, index, item)}"
            child_scope = scope.child({"item": item_value(item), **item_fields(item)})
            try:
                call = await self._prepare(state, name, child_scope)
            except (ManifestError, TaskError, StepError) as error:
                failed = Outcome(NodePhase.ERROR, str(error))
                run.settle(name, state.kind, template, failed)
                self._note_failure(state.task.name)
                return failed
            if call is None:
                return Outcome(NodePhase.SKIPPED)
            return await self._invoke(state.task.name, call)

        results = await _gather([child(i, item) for i, item in enumerate(items)])
        state.children = [outcome for outcome in results if outcome is not None]
        held_back = len(results) - len(state.children)
        phases = [outcome.phase for outcome in state.children]
        if NodePhase.ERROR in phases:
            phase = NodePhase.ERROR
        elif NodePhase.FAILED in phases or held_back:
            phase = NodePhase.FAILED
        else:
            phase = NodePhase.SUCCEEDED
        message = f"{held_back} of {len(items)} items never started" if held_back else ""
        run.finish(group, Outcome(phase, message))
        state.phase = phase

    # --- scopes and values ---------------------------------------------------------------

    def _task_scope(self, state: _Task) -> Scope:
        values: dict[str, str] = {}
        for name in ancestors(self.dependencies, state.task.name):
            values.update(self._exports(name))
        return self.scope.child(values)

    def _exports(self, name: str) -> dict[str, str]:
        """`tasks.<name>.*` values: status, ip, id and output parameters (aggregated)."""
        state = self.tasks[name]
        prefix = f"tasks.{name}"
        values = {
            f"{prefix}.ip": LOCAL_IP,
            f"{prefix}.status": state.phase.value if state.phase else "",
            f"{prefix}.id": node_id(self.run_state.identity.name, state.node_name),
        }
        if not state.task.fans_out:
            if state.outcome is not None:
                for key, value in state.outcome.parameters.items():
                    values[f"{prefix}.outputs.parameters.{key}"] = value
            return values
        # Argo's aggregated form: a JSON list with one entry per child, in item order.
        produced = [c.parameters for c in state.children if c.phase is NodePhase.SUCCEEDED]
        values[f"{prefix}.outputs.parameters"] = json_text([dict(p) for p in produced])
        for output in state.entry.template.outputs.parameters:
            column = [_json_or_text(p[output.name]) for p in produced if output.name in p]
            values[f"{prefix}.outputs.parameters.{output.name}"] = json_text(column)
        return values

    def _artifact(self, reference: str, where: str) -> ArtifactRef:
        match = TAG.fullmatch(reference.strip())
        name = match.group(1).strip() if match else reference
        parts = name.split(".")
        if len(parts) == 3 and parts[:2] == ["inputs", "artifacts"]:
            ref = self.input_artifacts.get(parts[2])
            if ref is None:
                raise TaskError(f"{where}: input artifact {parts[2]!r} was not supplied")
            return ref
        if len(parts) == 5 and parts[0] == "tasks" and parts[2:4] == ["outputs", "artifacts"]:
            state = self.tasks[parts[1]]
            found = state.outcome.artifacts.get(parts[4]) if state.outcome else None
            if found is None:
                phase = state.phase.value if state.phase else "not run"
                raise TaskError(
                    f"{where}: task {parts[1]!r} ({phase}) has no artifact {parts[4]!r}"
                )
            return found
        raise TaskError(f"{where}: cannot resolve artifact reference {reference!r}")

    def _items(self, task: DagTask, scope: Scope, where: str) -> list[JsonValue]:
        if task.with_items is not None:
            return [
                _substitute_json(item, scope, f"{where}: withItems") for item in task.with_items
            ]
        if task.with_param is not None:
            text = substitute(task.with_param, scope, f"{where}: withParam")
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            if not isinstance(items, list):
                raise TaskError(f"{where}: withParam is not a JSON list: {text[:200]!r}")
            return items
        assert task.with_sequence is not None
        return _sequence(task.with_sequence, scope, f"{where}: withSequence")

    # --- the end -------------------------------------------------------------------------

    def _conclude(self) -> Outcome:
        if self.daemon_failures:
            names = ", ".join(self.daemon_failures)
            return Outcome(NodePhase.FAILED, f"daemon {names} exited with an error")
        failed = self._failed_leaf()
        if failed is not None:
            name, phase = failed
            return Outcome(phase, f"task {name!r} {phase.value.lower()}")
        if any(state.phase is None for state in self.tasks.values()):
            first = self.failures[0] if self.failures else "?"
            return Outcome(NodePhase.FAILED, f"stopped after task {first!r} failed")
        try:
            return self._outputs()
        except (ManifestError, TaskError) as error:
            return Outcome(NodePhase.ERROR, str(error))

    def _failed_leaf(self) -> tuple[str, NodePhase] | None:
        """Argo's branch phase: an Omitted (or never started) task inherits its parents'."""
        memo: dict[str, NodePhase] = {}

        def branch(name: str) -> NodePhase:
            if name not in memo:
                phase = self.tasks[name].phase
                if phase is None or phase is NodePhase.OMITTED:
                    inherited = [branch(dep) for dep in sorted(self.dependencies[name])]
                    failures = [p for p in inherited if p.failed]
                    phase = failures[0] if failures else NodePhase.SUCCEEDED
                memo[name] = phase
            return memo[name]

        depended_on = set().union(*self.dependencies.values())
        for name in self.tasks:
            if name not in depended_on and branch(name).failed:
                origin = self._origin(name)
                return origin, branch(name)
        return None

    def _origin(self, leaf: str) -> str:
        """The failed task a failed branch comes from (for the message)."""
        phase = self.tasks[leaf].phase
        if phase is not None and phase.failed:
            return leaf
        for failure in self.failures:
            if failure in ancestors(self.dependencies, leaf):
                return failure
        return leaf

    def _outputs(self) -> Outcome:
        template = self.call.entry.template
        values: dict[str, str] = {}
        for name in self.tasks:
            values.update(self._exports(name))
        scope = self.scope.child(values)
        where = f"{self.run_state.path_of(self.call.node_name, template.name)} outputs"
        parameters: dict[str, str] = {}
        for output in template.outputs.parameters:
            source = output.value_from
            try:
                parameters[output.name] = substitute(str(source.parameter), scope, where)
            except ManifestError:
                if source.default is None:
                    raise
                parameters[output.name] = source.default
        artifacts: dict[str, ArtifactRef] = {}
        for artifact in template.outputs.artifacts:
            try:
                artifacts[artifact.name] = self._artifact(str(artifact.from_), where)
            except TaskError:
                if not artifact.optional:
                    raise
        return Outcome(NodePhase.SUCCEEDED, parameters=parameters, artifacts=artifacts)


def _sequence(sequence: Sequence, scope: Scope, where: str) -> list[JsonValue]:
    def number(value: int | str | None, default: int) -> int:
        if value is None:
            return default
        text = substitute(value, scope, where) if isinstance(value, str) else value
        return parse_count(text, where)

    start = number(sequence.start, 0)
    if sequence.end is not None:
        end = number(sequence.end, 0)
    else:
        count = number(sequence.count, 0)
        if count == 0:
            return []
        end = start + count - 1
    step = 1 if end >= start else -1
    pattern = sequence.format or "%d"
    try:
        return [pattern % i for i in range(start, end + step, step)]
    except (TypeError, ValueError) as error:
        raise ManifestError(f"{where}: format {pattern!r}: {error}") from None


def _substitute_json(value: JsonValue, scope: Scope, where: str) -> JsonValue:
    if isinstance(value, str):
        return substitute(value, scope, where)
    if isinstance(value, list):
        return [_substitute_json(item, scope, where) for item in value]
    if isinstance(value, dict):
        return {key: _substitute_json(item, scope, where) for key, item in value.items()}
    return value


def _json_or_text(value: str) -> object:
    """Argo keeps a value that is a JSON object as an object, anything else as a string."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, dict) else value


async def _gather(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """All results; if one raises (an engine error), the others are cancelled first."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await _cancel(tasks)
        raise


async def _cancel(tasks: Iterable["asyncio.Task[Any]"]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
