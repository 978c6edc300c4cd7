"""What a run produced: one record per node, in Argo's vocabulary (phases, node names).

A node's `path` is its Argo node name without the workflow name: `train(0).worker(1:1)` is
the worker with item 1 in the first attempt of the retried `train` DAG. Keys are keys in the
artifact repository bucket (`bucket`); `RunResult.uri` turns one into `s3://bucket/key`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path


class NodePhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"
    SKIPPED = "Skipped"
    OMITTED = "Omitted"
    DAEMONED = "Daemoned"

    @property
    def failed(self) -> bool:
        return self in (NodePhase.FAILED, NodePhase.ERROR)

    @property
    def fulfilled(self) -> bool:
        """Done for scheduling purposes: dependants may be decided (a daemon counts)."""
        return self is not NodePhase.RUNNING


class WorkflowPhase(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"


class NodeKind(StrEnum):
    POD = "Pod"
    DAG = "DAG"
    TASK_GROUP = "TaskGroup"
    STEPS = "Steps"
    STEP_GROUP = "StepGroup"
    SKIPPED = "Skipped"


@dataclass(frozen=True)
class NodeResult:
    path: str
    name: str
    id: str
    kind: NodeKind
    template: str
    phase: NodePhase
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    exit_code: int | None = None
    pod_name: str | None = None
    log_keys: tuple[str, ...] = ()
    """One `main.log` per attempt, oldest first."""
    log_path: Path | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    """Output artifact name -> key (a prefix for a folder stored without archive)."""
    message: str = ""
    progress: tuple[int, int] | None = None
    last_line: str = ""
    reused: str = ""
    """`memoized` or `resumed` when the node's outputs were reused instead of running it."""
    result: str | None = None
    """`outputs.result` of a container or script node (its stdout)."""

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def log_key(self) -> str | None:
        return self.log_keys[-1] if self.log_keys else None


@dataclass(frozen=True)
class RunResult:
    name: str
    uid: str
    namespace: str
    bucket: str
    phase: WorkflowPhase
    message: str
    started_at: datetime
    finished_at: datetime
    nodes: tuple[NodeResult, ...]

    @property
    def succeeded(self) -> bool:
        return self.phase is WorkflowPhase.SUCCEEDED

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def failed(self) -> tuple[NodeResult, ...]:
        """The failures that decided the run: nodes that failed by themselves (not because a
        node inside them failed), leaving out attempts a successful retry made good."""

        def inside(node: NodeResult, outer: NodeResult) -> bool:
            return node.path.startswith((outer.path + ".", outer.path + "("))

        failed = [node for node in self.nodes if node.phase.failed]
        return tuple(
            node
            for node in failed
            if not any(inside(other, node) for other in failed)
            and all(outer.phase.failed for outer in self.nodes if inside(node, outer))
        )

    def node(self, path: str) -> NodeResult:
        for node in self.nodes:
            if node.path == path:
                return node
        known = ", ".join(node.path for node in self.nodes)
        raise KeyError(f"no node {path!r} in run {self.name} (nodes: {known})")

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"
