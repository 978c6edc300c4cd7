"""Running one template call: bind its inputs, apply its retryStrategy, dispatch by kind.

With a retryStrategy each attempt is its own child node, `name(0)`, `name(1)`, ... as in
Argo, so attempts get distinct pod names (hence distinct keys and logs), and a retried DAG
template re-runs its whole sub-DAG: this is how a training group (tracker + workers)
retries as a unit. Before running, a node's outputs may be reused (engine/reuse.py): from
the journal of the run being resumed, or from the memoization cache.
"""

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from steps.core.errors import StepError
from workflows.engine import container, dag, mutex, steps
from workflows.engine.artifacts import ArtifactRef, Packing, locate, raw_artifact
from workflows.engine.errors import ManifestError
from workflows.engine.manifest import config_map_value
from workflows.engine.model import RetryStrategy, Synchronization
from workflows.engine.result import NodeKind, NodePhase
from workflows.engine.retry import RetryPlan, parse_count, parse_duration
from workflows.engine.reuse import MEMOIZED, RESUMED, MemoSlot, memo_lookup, memo_save
from workflows.engine.runtime import Call, NodeRecord, Outcome, RunState, TaskError
from workflows.engine.variables import Scope, json_text, substitute

MUTEX_FOLDER = ".mutexes"
"""Under the workdir every run of this machine shares: its mutexes are everyone's."""


@dataclass(frozen=True)
class Bound:
    """A call's inputs resolved against its template's declarations."""

    scope: Scope
    artifacts: dict[str, ArtifactRef]


async def execute(run: RunState, call: Call) -> Outcome:
    """Run a template call to its end (or, for a daemon, until it is ready)."""
    template = call.entry.template
    kind = NodeKind.POD
    if template.dag is not None:
        kind = NodeKind.DAG
    elif template.steps is not None:
        kind = NodeKind.STEPS
    record = run.record(call.node_name, kind, template.name)
    where = f"{record.path} ({template.name})"
    try:
        bound = await bind_inputs(run, call, where)
        plan = retry_plan(template.retry_strategy, bound.scope, f"{where}: retryStrategy")
        slot = None
        if template.memoize is not None:
            slot = MemoSlot.resolve(template.memoize, bound.scope, where)
        reused = await _reuse(run, call.node_name, slot)
    except (ManifestError, TaskError, StepError) as error:
        return run.finish(record, Outcome(NodePhase.ERROR, str(error)))
    if reused is not None:
        record.reused, outcome = reused
        return run.finish(record, outcome)
    if not template.runs_pod and plan is not None:
        run.journal.forget_inside(call.node_name)
    try:
        mutexes = _mutexes(run, template.synchronization, bound.scope, where)
    except ManifestError as error:
        return run.finish(record, Outcome(NodePhase.ERROR, str(error)))
    async with mutex.held(run.ctx.workdir / MUTEX_FOLDER, mutexes):
        if plan is None:
            outcome = await _attempt(run, call, bound, call.node_name, record, 0)
        else:
            outcome = await _with_retries(run, call, bound, record, plan)
    if outcome.phase is NodePhase.DAEMONED:
        record.phase = NodePhase.DAEMONED
        run.update(record)
        return outcome
    if outcome.phase is NodePhase.SUCCEEDED:
        run.export_globals(template, outcome)
        # Outputs are stored by now: only then may a resume or a cache hit skip this node.
        run.journal.record(call.node_name, outcome)
        if slot is not None:
            try:
                await asyncio.to_thread(
                    memo_save, run.store, slot, outcome, run.identity.name, record.path
                )
            except StepError as error:
                outcome = Outcome(NodePhase.ERROR, f"{where}: saving the memoize entry: {error}")
    return run.finish(record, outcome)


def _mutexes(
    run: RunState, synchronization: Synchronization | None, scope: Scope, where: str
) -> list[tuple[str, str]]:
    """(namespace, name) of each mutex; a mutex's namespace defaults to the workflow's."""
    if synchronization is None:
        return []
    return [
        (
            substitute(held.namespace or run.identity.namespace, scope, f"{where}: mutex"),
            substitute(held.name, scope, f"{where}: mutex"),
        )
        for held in synchronization.mutexes
    ]


async def _reuse(
    run: RunState, node_name: str, slot: MemoSlot | None
) -> tuple[str, Outcome] | None:
    """Outputs this node already has: from the interrupted run first, then from the cache."""
    resumed = run.journal.reuse(node_name)
    if resumed is not None:
        return RESUMED, resumed
    if slot is None:
        return None
    hit = await asyncio.to_thread(memo_lookup, run.store, slot, datetime.now(UTC))
    return None if hit is None else (MEMOIZED, hit)


async def _with_retries(
    run: RunState, call: Call, bound: Bound, record: NodeRecord, plan: RetryPlan
) -> Outcome:
    started = time.monotonic()
    attempt = 0
    last: dict[str, str] = {}
    while True:
        node_name = f"{call.node_name}({attempt})"
        began = time.monotonic()
        outcome = await _attempt(run, call, bound, node_name, record, attempt, last)
        last = {
            "lastRetry.exitCode": str(outcome.exit_code if outcome.exit_code is not None else ""),
            "lastRetry.status": outcome.phase.value,
            "lastRetry.duration": f"{time.monotonic() - began:.0f}",
            "lastRetry.message": outcome.message,
        }
        if not outcome.phase.failed or attempt >= plan.limit or not plan.retries(outcome.phase):
            return outcome
        attempt += 1
        delay = plan.delay(attempt)
        if not plan.within_budget(time.monotonic() - started, delay):
            return replace(outcome, message=f"{outcome.message} (retry maxDuration reached)")
        record.message = f"attempt {attempt} {outcome.phase}: {outcome.message}; retrying"
        run.update(record)
        await asyncio.sleep(delay)


FIRST_ATTEMPT = {
    "lastRetry.exitCode": "",
    "lastRetry.status": "",
    "lastRetry.duration": "",
    "lastRetry.message": "",
}
"""What Argo's `{{lastRetry.*}}` hold before any retry."""


async def _attempt(
    run: RunState,
    call: Call,
    bound: Bound,
    node_name: str,
    record: NodeRecord,
    retry: int,
    last: dict[str, str] | None = None,
) -> Outcome:
    scope = bound.scope.child({"retries": str(retry), **FIRST_ATTEMPT, **(last or {})})
    template = call.entry.template
    if template.dag is not None:
        run.begin(record)
        return await dag.run_dag(run, call, scope, bound.artifacts, node_name, execute)
    if template.steps is not None:
        run.begin(record)
        return await steps.run_steps(run, call, scope, bound.artifacts, node_name, execute)
    return await container.run_container(run, call, scope, bound.artifacts, node_name, record)


async def bind_inputs(run: RunState, call: Call, where: str) -> Bound:
    """Argument values over template values over defaults; a missing input is an error."""
    template = call.entry.template
    values: dict[str, str] = {}
    listed: list[dict[str, str]] = []
    for parameter in template.inputs.parameters:
        value = call.parameters.get(parameter.name)
        if value is None and parameter.value_from is not None:
            value = config_map_value(
                parameter.value_from, run.ctx.config_maps, f"{where}: inputs.parameters"
            )
        if value is None:
            fallback = parameter.value if parameter.value is not None else parameter.default
            if fallback is None:
                raise TaskError(f"{where}: inputs.parameters.{parameter.name} was not supplied")
            inputs_so_far = call.globals.child(values)
            value = substitute(fallback, inputs_so_far, f"{where}: inputs.parameters")
        if parameter.enum is not None and value not in parameter.enum:
            raise TaskError(
                f"{where}: inputs.parameters.{parameter.name}={value!r} is not one of "
                f"{list(parameter.enum)}"
            )
        values[f"inputs.parameters.{parameter.name}"] = value
        listed.append({"name": parameter.name, "value": value})
    if listed:
        values["inputs.parameters"] = json_text(listed)
    artifacts: dict[str, ArtifactRef] = {}
    for artifact in template.inputs.artifacts:
        ref = call.artifacts.get(artifact.name)
        if ref is None and artifact.raw is not None:
            ref = raw_artifact(substitute(artifact.raw.data, call.globals, f"{where}: raw"))
        if ref is None and artifact.s3 is not None:
            key = substitute(artifact.s3.key, call.globals, f"{where}: inputs.artifacts")
            packing = Packing.NONE if artifact.archive and artifact.archive.none else Packing.DETECT
            ref = await asyncio.to_thread(locate, run.store, key, packing)
        if ref is not None:
            artifacts[artifact.name] = ref
        elif not artifact.optional:
            raise TaskError(f"{where}: input artifact {artifact.name!r} was not supplied")
    return Bound(call.globals.child(values), artifacts)


def retry_plan(strategy: RetryStrategy | None, scope: Scope, where: str) -> RetryPlan | None:
    if strategy is None:
        return None

    def text(value: int | str) -> int | str:
        return substitute(value, scope, where) if isinstance(value, str) else value

    assert strategy.limit is not None  # the manifest check requires it
    backoff = strategy.backoff
    plan = RetryPlan(
        limit=parse_count(text(strategy.limit), f"{where}.limit"), policy=strategy.retry_policy
    )
    if backoff is None:
        return plan
    return replace(
        plan,
        duration=parse_duration(text(backoff.duration), f"{where}.backoff.duration")
        if backoff.duration is not None
        else 0.0,
        factor=float(parse_count(text(backoff.factor), f"{where}.backoff.factor"))
        if backoff.factor is not None
        else 1.0,
        max_duration=parse_duration(text(backoff.max_duration), f"{where}.backoff.maxDuration")
        if backoff.max_duration is not None
        else None,
    )
