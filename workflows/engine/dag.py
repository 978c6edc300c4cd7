"""Scheduling one DAG template: which task starts when, and how the DAG ends.

A task starts once every task its `depends` names is done (a daemon counts once ready);
if the expression is false it is Omitted. Independent tasks run concurrently, bounded by
the DAG's `parallelism` and the run's pod limit. With `target`, only the named tasks and
what they depend on run.

A failure stops nothing that can still run, as in Argo's controller (dag.go, v4.1.2):
executeDAG starts every task whose dependencies are done, and only then assessDAGPhase,
which reports the DAG Running while any of its nodes runs. So a failed branch never keeps
another branch's dependants from starting (Argo PR #5227, issue #10312): with
`A -> (B fails, C slow) -> D: B.Failed && C` and `E fails -> G: E && F`, D still runs once C
is done. `failFast` only decides which target's phase wins while others are undecided, and
once nothing runs every target is decided. The DAG then fails if a target's branch failed
(an Omitted task inheriting its parents' phase, a failure first), unless the target
`continueOn` it, or if a daemon exited non-zero. Daemons are stopped when the DAG ends,
whatever its phase.
"""

import asyncio
from collections.abc import Mapping

from workflows.engine.artifacts import ArtifactRef
from workflows.engine.composite import CallState, Composite, Execute, cancel
from workflows.engine.errors import ManifestError
from workflows.engine.expressions import TaskResult, evaluate_depends, referenced_tasks
from workflows.engine.model import DagTemplate
from workflows.engine.result import NodePhase
from workflows.engine.runtime import Call, Outcome, RunState, TaskError
from workflows.engine.scopes import ancestors
from workflows.engine.variables import Scope, substitute

_PHASE_RESULTS: Mapping[NodePhase, frozenset[TaskResult]] = {
    NodePhase.SUCCEEDED: frozenset({TaskResult.SUCCEEDED, TaskResult.COMPLETED}),
    NodePhase.FAILED: frozenset({TaskResult.FAILED, TaskResult.COMPLETED}),
    NodePhase.ERROR: frozenset({TaskResult.ERRORED, TaskResult.COMPLETED}),
    NodePhase.SKIPPED: frozenset({TaskResult.SKIPPED, TaskResult.COMPLETED}),
    NodePhase.OMITTED: frozenset({TaskResult.OMITTED}),
    NodePhase.DAEMONED: frozenset({TaskResult.DAEMONED}),
}


def results_of(state: CallState) -> frozenset[TaskResult]:
    assert state.phase is not None
    results = set(_PHASE_RESULTS.get(state.phase, frozenset()))
    if state.daemoned:
        results.add(TaskResult.DAEMONED)
    if state.call.fans_out:
        if any(child.phase is NodePhase.SUCCEEDED for child in state.children):
            results.add(TaskResult.ANY_SUCCEEDED)
        if state.children and all(c.phase is NodePhase.FAILED for c in state.children):
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


class _Dag(Composite):
    PREFIX = "tasks"
    GROUP_NODE = True

    def __init__(
        self,
        run: RunState,
        call: Call,
        scope: Scope,
        artifacts: Mapping[str, ArtifactRef],
        node_name: str,
        execute: Execute,
    ) -> None:
        super().__init__(run, call, scope, artifacts, node_name, execute)
        template = call.entry.template
        assert template.dag is not None
        self.dag: DagTemplate = template.dag
        self.depends = {}
        for task in self.dag.tasks:
            self.states[task.name] = CallState(
                call=task,
                entry=run.plan.resolve(call.entry, task),
                node_name=f"{node_name}.{task.name}",
            )
            self.depends[task.name] = run.plan.task_depends(call.entry, task.name)
        self.dependencies = {
            name: referenced_tasks(expression) if expression else set()
            for name, expression in self.depends.items()
        }
        self.targets: list[str] = []

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> Outcome:
        try:
            self.targets = self._targets()
        except (ManifestError, TaskError) as error:
            return Outcome(NodePhase.ERROR, str(error))
        needed = set(self.targets).union(*(ancestors(self.dependencies, t) for t in self.targets))
        pending = [name for name in self.states if name in needed]
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
            await cancel(running.keys())
            await asyncio.gather(*(daemon.stop() for daemon in self.daemons))
        return self._conclude()

    def _targets(self) -> list[str]:
        if self.dag.target is None:
            depended_on = set().union(*self.dependencies.values())
            return [name for name in self.states if name not in depended_on]
        where = f"{self.where(self.boundary, self.call.entry.template.name)}: dag.target"
        names = substitute(self.dag.target, self.scope, where).split()
        unknown = sorted(set(names) - set(self.states))
        if unknown:
            raise TaskError(f"{where}: no task(s) {unknown} in this DAG")
        return names

    def _schedule(self, pending: list[str], running: dict[asyncio.Task[None], str]) -> None:
        decided = True
        while decided:
            decided = False
            for name in list(pending):
                state = self.states[name]
                if not all(self.states[dep].fulfilled for dep in self.dependencies[name]):
                    continue
                expression = self.depends[name]
                if expression is not None and not evaluate_depends(
                    expression, lambda dep: results_of(self.states[dep])
                ):
                    pending.remove(name)
                    state.phase = NodePhase.OMITTED
                    call = state.call
                    condition = getattr(call, "depends", None) or " && ".join(
                        getattr(call, "dependencies", None) or ()
                    )
                    omitted = Outcome(NodePhase.OMITTED, f"depends {condition!r} not met")
                    template = state.entry.template.name
                    self.run_state.settle(state.node_name, state.kind, template, omitted)
                    decided = True
                    continue
                pending.remove(name)
                state.phase = NodePhase.RUNNING
                scope = self.scope.child(self.exports(ancestors(self.dependencies, name)))
                task = asyncio.create_task(self.run_call(state, scope, self.boundary))
                running[task] = name

    # --- the end -------------------------------------------------------------------------

    def _branch_phases(self) -> dict[str, NodePhase | None]:
        """Argo's branch phase of each decided task: an Omitted task inherits its parents'
        (a failure first); None for a task not decided yet."""
        memo: dict[str, NodePhase | None] = {}

        def branch(name: str) -> NodePhase | None:
            if name not in memo:
                phase = self.states[name].phase
                if phase is NodePhase.OMITTED:
                    inherited = [branch(dep) for dep in sorted(self.dependencies[name])]
                    failures = [p for p in inherited if p is not None and p.failed]
                    phase = failures[0] if failures else NodePhase.SUCCEEDED
                elif phase is NodePhase.RUNNING:
                    phase = None
                memo[name] = phase
            return memo[name]

        return {name: branch(name) for name in self.states}

    def _failed_target(self) -> tuple[str, NodePhase] | None:
        phases = self._branch_phases()
        for name in self.targets:
            phase = phases[name]
            if (
                phase is not None
                and phase.failed
                and not self.states[name].call.continues_on(phase)
            ):
                return name, phase
        return None

    def _conclude(self) -> Outcome:
        if self.daemon_failures:
            names = ", ".join(self.daemon_failures)
            return Outcome(NodePhase.FAILED, f"daemon {names} exited with an error")
        failed = self._failed_target()
        if failed is not None:
            name, phase = failed
            return Outcome(phase, f"task {self._origin(name)!r} {phase.value.lower()}")
        try:
            return self.outputs(self.scope.child(self.exports(self.states)))
        except (ManifestError, TaskError) as error:
            return Outcome(NodePhase.ERROR, str(error))

    def _origin(self, target: str) -> str:
        """The failed task a failed branch comes from (for the message)."""
        phase = self.states[target].phase
        if phase is not None and phase.failed:
            return target
        for name in sorted(ancestors(self.dependencies, target)):
            phase = self.states[name].phase
            if phase is not None and phase.failed:
                return name
        return target
