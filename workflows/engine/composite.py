"""What DAG and steps templates share: calling a template for one task or step.

A call (a DAG task or a step) names a template (or carries one inline), gives it arguments,
may run only `when` a condition holds, may fan out over `withItems`/`withParam`/
`withSequence` (one node per item, named as Argo's generateNodeName names it), may
`continueOn` a failure, and may have an `exit` hook that runs once its node finished.
Its results become `{{tasks.<name>...}}` (DAG) or `{{steps.<name>...}}` (steps) values:
status, id, times, exit code, `outputs.result`, output parameters and artifacts, and for a
fan-out Argo's aggregated JSON lists. The subclasses decide when each call runs.
"""

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import JsonValue

from steps.core.errors import MlpipeError
from workflows.engine.artifacts import ArtifactRef, Packing, locate, raw_artifact
from workflows.engine.container import Daemon
from workflows.engine.errors import ManifestError, VariableError
from workflows.engine.expressions import evaluate_when
from workflows.engine.manifest import TemplateEntry
from workflows.engine.model import Call_, Hook, Sequence
from workflows.engine.naming import expanded_name, item_fields, item_value, node_id
from workflows.engine.result import NodeKind, NodePhase
from workflows.engine.retry import parse_count
from workflows.engine.runtime import Call, Outcome, RunState, TaskError
from workflows.engine.variables import (
    SKIPPED_OUTPUT,
    TAG,
    Scope,
    evaluate_object,
    evaluate_value,
    json_text,
    substitute,
)

Execute = Callable[[RunState, Call], Awaitable[Outcome]]
T = TypeVar("T")
HOST_NAME = socket.gethostname()


@dataclass
class CallState:
    """One task's or step's progress: decided phase, outputs, fan-out children."""

    call: Call_
    entry: TemplateEntry
    node_name: str
    phase: NodePhase | None = None
    """None while undecided; Running once started."""
    outcome: Outcome | None = None
    children: list[Outcome] = field(default_factory=list)
    daemoned: bool = False

    @property
    def kind(self) -> NodeKind:
        template = self.entry.template
        return NodeKind.POD if template.runs_pod else NodeKind.DAG

    @property
    def fulfilled(self) -> bool:
        return self.phase is not None and self.phase.fulfilled


class Composite:
    """A DAG or steps template being run: its calls' states and the values they export."""

    PREFIX: ClassVar[str] = ""
    """`tasks` or `steps`: how calls of this template name each other's results."""
    GROUP_NODE: ClassVar[bool] = False
    """DAG fan-outs get a TaskGroup node holding their children; steps' do not (as in Argo)."""

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
        self.run_state = run
        self.call = call
        self.scope = scope
        self.input_artifacts = artifacts
        self.boundary = node_name
        self.execute = execute
        self.states: dict[str, CallState] = {}
        self.slots = asyncio.Semaphore(template.parallelism) if template.parallelism else None
        self.daemons: list[Daemon] = []
        self.daemon_failures: list[str] = []

    def where(self, node_name: str, name: str) -> str:
        return self.run_state.path_of(node_name, name)

    # --- running one call ----------------------------------------------------------------

    async def run_call(self, state: CallState, scope: Scope, siblings: str) -> None:
        """Run `state`'s call to its end (a daemon: until ready); `siblings` is the node name
        its fan-out children are named under."""
        call = state.call
        template = state.entry.template.name
        try:
            if call.fans_out:
                items = self._items(call, scope, self.where(state.node_name, call.name))
                await self._run_items(state, scope, items, siblings)
                return
            prepared = await self._prepare(state, state.node_name, scope)
        except (ManifestError, TaskError, MlpipeError) as error:
            state.phase = NodePhase.ERROR
            failed = Outcome(NodePhase.ERROR, str(error))
            state.outcome = failed
            self.run_state.settle(state.node_name, state.kind, template, failed)
            return
        if prepared is None:
            state.phase = NodePhase.SKIPPED
            return
        outcome = await self._invoke(call.name, prepared)
        state.outcome = outcome
        state.phase = outcome.phase
        state.daemoned = outcome.phase is NodePhase.DAEMONED
        await self._exit_hook(state, state.node_name, scope)

    async def _prepare(self, state: CallState, node_name: str, scope: Scope) -> Call | None:
        """Substitute the call's arguments; None (and a Skipped node) when `when` is false."""
        call = state.call
        where = self.where(node_name, call.name)
        if call.when is not None:
            condition = substitute(call.when, scope, f"{where}: when")
            if not evaluate_when(condition):
                skipped = Outcome(NodePhase.SKIPPED, f"when '{condition}' evaluated false")
                self.run_state.settle(node_name, state.kind, state.entry.template.name, skipped)
                return None
        parameters: dict[str, str] = {}
        for parameter in call.arguments.parameters:
            value = substitute_argument(
                parameter.value, scope, f"{where}: arguments.parameters.{parameter.name}"
            )
            if value is not None:
                parameters[parameter.name] = value
        artifacts = await self.arguments_artifacts(call.arguments.artifacts, scope, where)
        # `{{steps.name}}` / `{{tasks.name}}`: the called template sees the call's name.
        called = self.call.globals.child({f"{self.PREFIX}.name": call.name})
        return Call(state.entry, node_name, parameters, artifacts, called)

    async def arguments_artifacts(
        self, given: Iterable[Any], scope: Scope, where: str
    ) -> dict[str, ArtifactRef]:
        artifacts: dict[str, ArtifactRef] = {}
        for artifact in given:
            if artifact.from_ is not None:
                ref = self.artifact(artifact.from_, scope, where)
            elif artifact.raw is not None:
                ref = raw_artifact(substitute(artifact.raw.data, scope, f"{where}: raw"))
            else:
                key = substitute(artifact.s3.key, scope, f"{where}: arguments.artifacts")
                store = self.run_state.store
                ref = await asyncio.to_thread(locate, store, key, Packing.DETECT)
            if artifact.sub_path:
                sub = substitute(artifact.sub_path, scope, f"{where}: subPath")
                ref = ArtifactRef(ref.key, ref.packing, ref.is_dir, ref.raw, sub)
            artifacts[artifact.name] = ref
        return artifacts

    async def _invoke(self, name: str, call: Call) -> Outcome:
        async with self._slot(call.entry.template.daemon):
            outcome = await self.execute(self.run_state, call)
        if outcome.daemon is not None:
            outcome.daemon.on_exit = lambda phase: self._daemon_exited(name, phase)
            self.daemons.append(outcome.daemon)
        return outcome

    def _daemon_exited(self, name: str, phase: NodePhase) -> None:
        state = self.states[name]
        if not state.call.fans_out:
            state.phase = phase
        if phase.failed:
            self.daemon_failures.append(name)

    @contextlib.asynccontextmanager
    async def _slot(self, daemon: bool) -> AsyncIterator[None]:
        # Daemons hold no slot: they wait for dependants that need slots themselves.
        if daemon or self.slots is None:
            yield
            return
        async with self.slots:
            yield

    async def _run_items(
        self, state: CallState, scope: Scope, items: list[JsonValue], siblings: str
    ) -> None:
        """A fanned-out call: one child node per item (under a TaskGroup node in a DAG)."""
        run = self.run_state
        template = state.entry.template.name
        group = None
        if self.GROUP_NODE:
            group = run.record(state.node_name, NodeKind.TASK_GROUP, template)
            run.begin(group)

        async def child(index: int, item: JsonValue) -> Outcome:
            name = f"{siblings}.{expanded_name(state.call.name, index, item)}"
            child_scope = scope.child({"item": item_value(item), **item_fields(item)})
            try:
                prepared = await self._prepare(state, name, child_scope)
            except (ManifestError, TaskError, MlpipeError) as error:
                failed = Outcome(NodePhase.ERROR, str(error))
                run.settle(name, state.kind, template, failed)
                return failed
            if prepared is None:
                return Outcome(NodePhase.SKIPPED)
            outcome = await self._invoke(state.call.name, prepared)
            child_state = CallState(state.call, state.entry, name, outcome.phase, outcome)
            await self._exit_hook(child_state, name, child_scope)
            return outcome

        state.children = await gather([child(i, item) for i, item in enumerate(items)])
        phases = [outcome.phase for outcome in state.children]
        if NodePhase.ERROR in phases:
            phase = NodePhase.ERROR
        elif NodePhase.FAILED in phases:
            phase = NodePhase.FAILED
        else:
            phase = NodePhase.SUCCEEDED
        if group is not None:
            run.finish(group, Outcome(phase))
        state.phase = phase

    async def _exit_hook(self, state: CallState, node_name: str, scope: Scope) -> None:
        """A call's `exit` hook runs once its node finished (not when it was skipped)."""
        hook: Hook | None = state.call.exit_hook
        if hook is None or state.phase in (None, NodePhase.SKIPPED, NodePhase.DAEMONED):
            return
        values = self.exports_of(state.call.name, state)
        hook_scope = scope.child(values)
        where = f"{self.where(node_name, state.call.name)}.onExit"
        try:
            entry = self.run_state.plan.resolve(self.call.entry, hook)
            parameters = {
                p.name: substitute(p.value, hook_scope, f"{where}: arguments.parameters")
                for p in hook.arguments.parameters
            }
            artifacts = await self.arguments_artifacts(hook.arguments.artifacts, hook_scope, where)
        except (ManifestError, TaskError, MlpipeError) as error:
            failed = Outcome(NodePhase.ERROR, str(error))
            self.run_state.settle(f"{node_name}.onExit", NodeKind.POD, "", failed)
            return
        exit_call = Call(entry, f"{node_name}.onExit", parameters, artifacts, self.call.globals)
        async with self._slot(False):
            await self.execute(self.run_state, exit_call)

    # --- values and artifacts ------------------------------------------------------------

    def exports(self, names: Iterable[str]) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in names:
            values.update(self.exports_of(name, self.states[name]))
        return values

    def exports_of(self, name: str, state: CallState) -> dict[str, str]:
        """`{{tasks.<name>.*}}` / `{{steps.<name>.*}}`: status, id, times, exit code, result,
        output parameters (aggregated as Argo does for a fan-out)."""
        prefix = f"{self.PREFIX}.{name}"
        run = self.run_state
        values = {
            f"{prefix}.status": state.phase.value if state.phase else "",
            f"{prefix}.id": node_id(run.identity.name, state.node_name),
            f"{prefix}.hostNodeName": HOST_NAME,
        }
        if state.outcome is not None and state.outcome.pod_ip is not None:
            values[f"{prefix}.ip"] = state.outcome.pod_ip
        record = run.records.get(state.node_name)
        if record is not None and record.started_at is not None:
            values[f"{prefix}.startedAt"] = record.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if record is not None and record.finished_at is not None:
            values[f"{prefix}.finishedAt"] = record.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        outputs = state.entry.template.outputs
        if state.phase in (NodePhase.SKIPPED, NodePhase.OMITTED):
            for output in outputs.parameters:
                default = output.value_from.default
                key = f"{prefix}.outputs.parameters.{output.name}"
                values[key] = SKIPPED_OUTPUT if default is None else default
            values[f"{prefix}.outputs.result"] = SKIPPED_OUTPUT
            return values
        if not state.call.fans_out:
            outcome = state.outcome
            if outcome is not None:
                for key, value in outcome.parameters.items():
                    values[f"{prefix}.outputs.parameters.{key}"] = value
                if outcome.result is not None:
                    values[f"{prefix}.outputs.result"] = outcome.result
                if outcome.exit_code is not None:
                    values[f"{prefix}.exitCode"] = str(outcome.exit_code)
            return values
        succeeded = [c for c in state.children if c.phase is NodePhase.SUCCEEDED]
        produced = [c.parameters for c in succeeded if c.parameters]
        values[f"{prefix}.outputs.parameters"] = json_text([dict(p) for p in produced])
        for output in outputs.parameters:
            column = [p[output.name] for p in produced if output.name in p]
            values[f"{prefix}.outputs.parameters.{output.name}"] = aggregated_list(column)
        results = [_json_item(c.result) for c in succeeded if c.result is not None]
        values[f"{prefix}.outputs.result"] = json_text(results)
        return values

    def artifact(self, reference: str, scope: Scope, where: str) -> ArtifactRef:
        """What an artifact `from` names: an input of this template, an output of a call
        (its last attempt's), or a workflow output (`globalName`)."""
        match = TAG.fullmatch(reference.strip())
        name = match.group(1).strip() if match else reference
        parts = name.split(".")
        if len(parts) == 3 and parts[:2] == ["inputs", "artifacts"]:
            ref = self.input_artifacts.get(parts[2])
            if ref is None:
                raise TaskError(f"{where}: input artifact {parts[2]!r} was not supplied")
            return ref
        if len(parts) == 4 and parts[:3] == ["workflow", "outputs", "artifacts"]:
            ref = self.run_state.global_artifacts.get(parts[3])
            if ref is None:
                raise TaskError(f"{where}: no workflow output artifact {parts[3]!r} (yet)")
            return ref
        is_call_output = parts[0] == self.PREFIX and parts[2:4] == ["outputs", "artifacts"]
        if len(parts) == 5 and is_call_output and parts[1] in self.states:
            state = self.states[parts[1]]
            found = state.outcome.artifacts.get(parts[4]) if state.outcome else None
            if found is None:
                phase = state.phase.value if state.phase else "not run"
                raise TaskError(
                    f"{where}: {self.PREFIX[:-1]} {parts[1]!r} ({phase}) has no artifact "
                    f"{parts[4]!r}"
                )
            return found
        raise TaskError(f"{where}: cannot resolve artifact reference {reference!r}")

    def _artifact_values(self) -> dict[str, object]:
        """Every call's output artifacts by flat name, for a `fromExpression`."""
        values: dict[str, object] = {}
        for name, state in self.states.items():
            if state.outcome is not None:
                for artifact, ref in state.outcome.artifacts.items():
                    values[f"{self.PREFIX}.{name}.outputs.artifacts.{artifact}"] = ref
        return values

    def _items(self, call: Call_, scope: Scope, where: str) -> list[JsonValue]:
        if call.with_items is not None:
            return [
                _substitute_json(item, scope, f"{where}: withItems") for item in call.with_items
            ]
        if call.with_param is not None:
            text = substitute(call.with_param, scope, f"{where}: withParam")
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            if not isinstance(items, list):
                raise TaskError(f"{where}: withParam is not a JSON list: {text[:200]!r}")
            return items
        assert call.with_sequence is not None
        return _sequence(call.with_sequence, scope, f"{where}: withSequence")

    # --- the template's own outputs -------------------------------------------------------

    def outputs(self, scope: Scope) -> Outcome:
        """A DAG's or steps template's outputs, from its calls' (`parameter`, `expression`,
        `from`, `fromExpression`)."""
        template = self.call.entry.template
        where = f"{self.where(self.call.node_name, template.name)} outputs"
        parameters: dict[str, str] = {}
        for output in template.outputs.parameters:
            source = output.value_from
            try:
                if source.expression is not None:
                    value = evaluate_value(source.expression, scope, where)
                else:
                    value = substitute(str(source.parameter), scope, where)
                if value == SKIPPED_OUTPUT:
                    raise VariableError(str(source.parameter), where, "its task was skipped")
            except ManifestError:
                if source.default is None:
                    raise
                value = source.default
            parameters[output.name] = value
        artifacts: dict[str, ArtifactRef] = {}
        for artifact in template.outputs.artifacts:
            try:
                if artifact.from_expression is not None:
                    chosen = evaluate_object(
                        artifact.from_expression, scope, self._artifact_values(), where
                    )
                    if not isinstance(chosen, ArtifactRef):
                        raise TaskError(f"{where}: fromExpression gave {chosen!r}, no artifact")
                    artifacts[artifact.name] = chosen
                else:
                    artifacts[artifact.name] = self.artifact(str(artifact.from_), scope, where)
            except TaskError:
                if not artifact.optional:
                    raise
        return Outcome(NodePhase.SUCCEEDED, parameters=parameters, artifacts=artifacts)


def substitute_argument(text: str, scope: Scope, where: str) -> str | None:
    """An argument's value, or None when it names a skipped call's output that has no
    default: the template's input default then applies, as in Argo."""
    value = substitute(text, scope, where)
    return None if SKIPPED_OUTPUT in value else value


def aggregated_list(values: list[str]) -> str:
    """Argo's aggregatedJSONValueList: the values as JSON objects/lists when every one of
    them is one, else as strings."""
    decoded = []
    for value in values:
        try:
            item = json.loads(value)
        except ValueError:
            return json_text(values)
        if not isinstance(item, dict | list):
            return json_text(values)
        decoded.append(item)
    return json_text(decoded)


def _json_item(result: str) -> object:
    """A child's `outputs.result` in the aggregated list: as JSON when it is JSON."""
    try:
        return json.loads(result)
    except ValueError:
        return result


def _sequence(sequence: Sequence, scope: Scope, where: str) -> list[JsonValue]:
    """Argo's expandSequence: start..end inclusive (counting down when end < start)."""

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


async def gather(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """All results; if one raises (an engine error), the others are cancelled first."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await cancel(tasks)
        raise


async def cancel(tasks: Iterable["asyncio.Task[Any]"]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
