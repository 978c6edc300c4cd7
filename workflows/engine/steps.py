"""Running one steps template: groups of steps, one group after the other (steps.go).

The steps of a group run in parallel (bounded by the template's `parallelism` and the run's
pod limit), each seeing the results of every earlier group as `{{steps.<name>...}}`. A group
is a StepGroup node `<node>[i]`, its steps `<node>[i].<step>`, a fanned-out step's items
`<node>[i].<step>(j:item)` directly under it (no TaskGroup node, as in Argo). Once a group is
done, a step that failed without `continueOn` for its phase fails the group and the template;
later groups never start. Daemons are stopped when the template ends.
"""

import asyncio
from collections.abc import Mapping

from workflows.engine.artifacts import ArtifactRef
from workflows.engine.composite import CallState, Composite, Execute, gather
from workflows.engine.errors import ManifestError
from workflows.engine.result import NodeKind, NodePhase
from workflows.engine.runtime import Call, Outcome, RunState, TaskError
from workflows.engine.variables import Scope


async def run_steps(
    run: RunState,
    call: Call,
    scope: Scope,
    artifacts: Mapping[str, ArtifactRef],
    node_name: str,
    execute: Execute,
) -> Outcome:
    """Run the steps of `call.entry` as node `node_name`."""
    return await _Steps(run, call, scope, artifacts, node_name, execute).run()


class _Steps(Composite):
    PREFIX = "steps"

    async def run(self) -> Outcome:
        groups = self.call.entry.template.steps or ()
        run = self.run_state
        try:
            for index, group in enumerate(groups):
                group_name = f"{self.boundary}[{index}]"
                record = run.record(group_name, NodeKind.STEP_GROUP, "")
                run.begin(record)
                scope = self.scope.child(self.exports(self.states))
                states = [
                    CallState(
                        step, run.plan.resolve(self.call.entry, step), f"{group_name}.{step.name}"
                    )
                    for step in group
                ]
                for state in states:
                    self.states[state.call.name] = state
                await gather([self.run_call(state, scope, group_name) for state in states])
                failed = [
                    state
                    for state in states
                    if state.phase is not None
                    and state.phase.failed
                    and not state.call.continues_on(state.phase.value)
                ]
                if failed:
                    first = failed[0]
                    message = f"step {first.call.name!r} {str(first.phase).lower()}"
                    run.finish(record, Outcome(NodePhase.FAILED, message))
                    return Outcome(NodePhase.FAILED, message)
                if self.daemon_failures:
                    message = f"daemon {', '.join(self.daemon_failures)} exited with an error"
                    run.finish(record, Outcome(NodePhase.FAILED, message))
                    return Outcome(NodePhase.FAILED, message)
                run.finish(record, Outcome(NodePhase.SUCCEEDED))
            try:
                return self.outputs(self.scope.child(self.exports(self.states)))
            except (ManifestError, TaskError) as error:
                return Outcome(NodePhase.ERROR, str(error))
        finally:
            await asyncio.gather(*(daemon.stop() for daemon in self.daemons))
