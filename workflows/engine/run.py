"""`run_workflow`: execute a compiled Argo Workflow on this machine.

The workflow gets a name (from `generateName` like the API server would) and a uid, its
entrypoint runs under the workflow's activeDeadlineSeconds, then `spec.onExit` runs with
`{{workflow.status}}` and `{{workflow.failures}}` whatever happened. Ctrl-C (or any engine
error) kills every task's process group before the exception leaves `run_workflow`.

`resume=NAME` runs an interrupted run again under its own name and uid: every node its
journal records as finished is reused, the rest runs (engine/reuse.py).
"""

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from steps.core.errors import StepError
from workflows.engine import mutex, scopes
from workflows.engine.artifacts import ArtifactRef, Packing, locate, raw_artifact
from workflows.engine.context import DEFAULT_KEY_FORMAT, EngineContext
from workflows.engine.errors import ArgoRuleError, ManifestError
from workflows.engine.executor import MUTEX_FOLDER, execute
from workflows.engine.filesystem import FilesystemMode, resolve_mode
from workflows.engine.manifest import ExitHook, WorkflowPlan, load_plan, remap_refusals
from workflows.engine.naming import generated_name
from workflows.engine.observer import Observer
from workflows.engine.process import ProcessGroups
from workflows.engine.result import NodeKind, NodePhase, NodeResult, RunResult, WorkflowPhase
from workflows.engine.reuse import Journal
from workflows.engine.runtime import Call, Identity, Outcome, RunState, TaskError
from workflows.engine.validate import workflow_problems
from workflows.engine.variables import substitute

_WORKFLOW_PHASE = {
    NodePhase.SUCCEEDED: WorkflowPhase.SUCCEEDED,
    NodePhase.FAILED: WorkflowPhase.FAILED,
    NodePhase.ERROR: WorkflowPhase.ERROR,
}


def check_workflow(
    workflow: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    ctx: EngineContext | None = None,
    *,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    filesystem: FilesystemMode | None = None,
) -> WorkflowPlan:
    """Everything run_workflow checks before starting: first Argo's own rules (ArgoRuleError,
    every problem listed), then what the local engine can run (strict fields, references;
    with `ctx` also secrets, ConfigMaps and key_format; with a filesystem mode, whether its
    tasks' paths can be given to them); raises ManifestError."""
    problems = workflow_problems(workflow, templates)
    if problems:
        raise ArgoRuleError(problems)
    if ctx is not None:
        config_maps, filesystem = ctx.config_maps, ctx.filesystem
    plan = load_plan(workflow, templates, ctx.secrets if ctx else None, config_maps)
    exit_daemon = plan.on_exit is not None and plan.on_exit.entry.template.daemon
    if plan.entrypoint.template.daemon or exit_daemon:
        raise ManifestError(f"{plan.source}: the entrypoint and onExit cannot be daemons")
    if ctx is not None:
        if ctx.parallelism < 1:
            raise ManifestError(f"EngineContext.parallelism must be >= 1, got {ctx.parallelism}")
        key_format = ctx.key_format or DEFAULT_KEY_FORMAT
        scopes.check_key_format(key_format, scopes.global_names(plan.arguments))
    if filesystem is not None:
        mode, reason = _filesystem(filesystem)
        refusals = remap_refusals(plan) if mode is FilesystemMode.REMAP else []
        if refusals:
            lines = "\n".join(f"  {problem}" for problem in refusals)
            raise ManifestError(
                f"{plan.source} needs each task's own filesystem, which this machine cannot "
                f"give ({reason}); with remapped paths only paths under a volumeMount exist, "
                f"and only arguments that start with one are rewritten:\n{lines}"
            )
    return plan


def _filesystem(requested: FilesystemMode) -> tuple[FilesystemMode, str]:
    try:
        return resolve_mode(requested)
    except OSError as error:
        raise ManifestError(str(error)) from None


def run_workflow(
    workflow: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    ctx: EngineContext,
    observer: Observer | None = None,
    resume: str | None = None,
) -> RunResult:
    """Run a Workflow manifest (its own spec, or a `workflowTemplateRef` into `templates`,
    WorkflowTemplate manifests by name). Task failures are in the result, not raised.

    Raises ManifestError (UnsupportedField, VariableError) before anything runs, and
    KeyboardInterrupt after cleanup when interrupted.
    """
    plan = check_workflow(workflow, templates, ctx)
    if resume is not None:
        journal = Journal.resume(ctx.workdir / resume)
    else:
        name = _unused_name(plan, ctx)
        identity = Identity(name, str(uuid.uuid4()), plan.namespace, datetime.now(UTC))
        journal = Journal(ctx.workdir / name, identity)
    groups = ProcessGroups()
    try:
        return asyncio.run(_run(plan, journal, ctx, observer or Observer(), groups))
    finally:
        # Last resort: no task process outlives the run, however it ended.
        groups.kill_all()


async def _run(
    plan: WorkflowPlan,
    journal: Journal,
    ctx: EngineContext,
    observer: Observer,
    groups: ProcessGroups,
) -> RunResult:
    identity = journal.identity
    mode, _ = _filesystem(ctx.filesystem)
    run = RunState(plan, identity, ctx, observer, groups, journal, mode)
    run.directory.mkdir(parents=True, exist_ok=True)
    journal.save()  # a run killed before its first node finished can still be resumed
    observer.workflow_started(identity.name, identity.uid)
    async with mutex.held(ctx.workdir / MUTEX_FOLDER, _workflow_mutexes(plan, identity)):
        outcome = await _entrypoint(run)
    await run.flush_uploads()
    phase = _WORKFLOW_PHASE.get(outcome.phase, WorkflowPhase.ERROR)
    if plan.on_exit is not None:
        run.global_values["workflow.status"] = phase.value
        run.global_values["workflow.failures"] = run.failures()
        exit_outcome = await _on_exit(run, plan.on_exit)
        await run.flush_uploads()
        if exit_outcome.phase.failed and phase is WorkflowPhase.SUCCEEDED:
            phase = _WORKFLOW_PHASE[exit_outcome.phase]
    if run.upload_errors:
        phase = WorkflowPhase.ERROR
    result = RunResult(
        name=identity.name,
        uid=identity.uid,
        namespace=identity.namespace,
        bucket=ctx.store.bucket,
        phase=phase,
        message="",
        started_at=identity.created,
        finished_at=datetime.now(UTC),
        nodes=tuple(record.snapshot() for record in run.records.values() if run.observed(record)),
    )
    result = replace(result, message=_message(result, outcome, run))
    observer.workflow_finished(result)
    return result


def _workflow_mutexes(plan: WorkflowPlan, identity: Identity) -> list[tuple[str, str]]:
    """`spec.synchronization.mutexes`: held by the whole run, onExit excepted (as in Argo,
    which releases a workflow-level lock when the workflow completes)."""
    sync = plan.spec.synchronization
    if sync is None:
        return []
    return [(m.namespace or identity.namespace, m.name) for m in sync.mutexes]


async def _on_exit(run: RunState, hook: ExitHook) -> Outcome:
    """The exit handler, with the arguments `spec.hooks.exit` gives it."""
    name = f"{run.identity.name}.onExit"
    where = f"{run.plan.source}: spec.onExit"
    try:
        parameters = {
            p.name: substitute(p.value, run.globals, f"{where}: arguments.parameters")
            for p in hook.hook.arguments.parameters
        }
        artifacts = {}
        for artifact in hook.hook.arguments.artifacts:
            if artifact.from_ is None:
                raise TaskError(f"{where}: artifact {artifact.name!r} needs `from`")
            key = artifact.from_.strip().removeprefix("{{").removesuffix("}}").strip()
            ref = run.global_artifacts.get(key.removeprefix("workflow.outputs.artifacts."))
            if ref is None:
                raise TaskError(f"{where}: cannot resolve artifact {artifact.from_!r}")
            artifacts[artifact.name] = ref
    except (ManifestError, TaskError) as error:
        return run.finish(run.record(name, NodeKind.POD, ""), Outcome(NodePhase.ERROR, str(error)))
    return await execute(run, Call(hook.entry, name, parameters, artifacts, run.globals))


async def _entrypoint(run: RunState) -> Outcome:
    """Run the entrypoint under the workflow's activeDeadlineSeconds."""
    plan = run.plan
    try:
        artifacts = await _workflow_artifacts(run)
    except (ManifestError, TaskError, StepError) as error:
        return Outcome(NodePhase.ERROR, str(error))
    main = asyncio.create_task(
        execute(
            run, Call(plan.entrypoint, run.identity.name, plan.arguments, artifacts, run.globals)
        )
    )
    timer = None
    if plan.active_deadline_seconds is not None:
        seconds = plan.active_deadline_seconds
        timer = asyncio.get_running_loop().call_later(seconds, _expire, run, main, seconds)
    try:
        return await main
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if not run.expired or (current is not None and current.cancelling()):
            raise  # Ctrl-C: the caller's cancellation, not our deadline
        run.abort_unfinished()
        return Outcome(NodePhase.FAILED, run.cancel_reason)
    finally:
        if timer is not None:
            timer.cancel()


async def _workflow_artifacts(run: RunState) -> dict[str, ArtifactRef]:
    """`spec.arguments.artifacts`, which the entrypoint receives as its input artifacts."""
    artifacts: dict[str, ArtifactRef] = {}
    for name, artifact in run.plan.artifacts.items():
        where = f"{run.plan.source}: spec.arguments.artifacts {name}"
        if artifact.raw is not None:
            artifacts[name] = raw_artifact(substitute(artifact.raw.data, run.globals, where))
        elif artifact.s3 is not None:
            key = substitute(artifact.s3.key, run.globals, where)
            artifacts[name] = await asyncio.to_thread(locate, run.store, key, Packing.DETECT)
    return artifacts


def _unused_name(plan: WorkflowPlan, ctx: EngineContext) -> str:
    """Argo refuses a second Workflow with the same name; so do we, as its keys would clash."""
    if plan.name is not None:
        if (ctx.workdir / plan.name).exists():
            raise ManifestError(
                f"{plan.source}: a run named {plan.name!r} already exists under {ctx.workdir}; "
                "use metadata.generateName for repeatable runs"
            )
        return plan.name
    while (ctx.workdir / (name := generated_name(str(plan.generate_name)))).exists():
        pass
    return name


def _expire(run: RunState, main: "asyncio.Task[Outcome]", seconds: int) -> None:
    run.expired = True
    run.cancel_reason = f"workflow activeDeadlineSeconds={seconds} exceeded"
    main.cancel()


def _message(result: RunResult, outcome: Outcome, run: RunState) -> str:
    """Name what failed: each failed task, its exit code, last log line and log key."""
    parts = [outcome.message] if run.expired else []
    if not result.succeeded:
        parts += [_describe(node, result) for node in result.failed]
        if not parts:
            parts.append(outcome.message)  # the entrypoint failed by itself (e.g. its outputs)
    return "; ".join(parts + run.upload_errors)


def _describe(node: NodeResult, result: RunResult) -> str:
    text = f"{node.path} {node.phase.value.lower()}"
    if node.message:
        text += f": {node.message}"
    if node.log_key is not None:
        text += f" (log: {result.uri(node.log_key)})"
    return text
