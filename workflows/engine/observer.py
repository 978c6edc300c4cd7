"""Callbacks a run reports to while it executes (the console view is one implementation).

All callbacks run on the engine's event-loop thread, one at a time, so an implementation
needs no locking of its own unless it renders from another thread. An exception raised by a
callback aborts the run: every task process is killed and the exception propagates.
"""

from workflows.engine.result import NodeResult, RunResult


class Observer:
    """No-op base: override the callbacks you need."""

    def workflow_started(self, name: str, uid: str) -> None:
        """The run has a name and is about to start its entrypoint."""

    def node_started(self, node: NodeResult) -> None:
        """A node began (a pod node once per attempt, `node.attempts` counting them)."""

    def node_updated(self, node: NodeResult) -> None:
        """A running node changed without finishing: a daemon became ready, a retry waits."""

    def node_progress(self, path: str, done: int, total: int) -> None:
        """The task wrote `done/total` to its ARGO_PROGRESS_FILE."""

    def log_line(self, path: str, line: str) -> None:
        """One line of a task's combined stdout/stderr (also archived as main.log)."""

    def node_finished(self, node: NodeResult) -> None:
        """A node reached its final phase (Skipped and Omitted nodes only finish)."""

    def workflow_finished(self, result: RunResult) -> None:
        """The run is over, onExit included; `result` is what run_workflow returns."""
