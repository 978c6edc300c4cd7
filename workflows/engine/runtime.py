"""The state of one run: node records, limits, background uploads, the observer.

Everything here is touched only from the run's event loop, so nothing needs locks; blocking
S3 calls happen in worker threads and hand their results back to the loop.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.core.errors import MlpipeError
from workflows.engine.artifacts import ArtifactRef
from workflows.engine.context import DEFAULT_KEY_FORMAT, EngineContext
from workflows.engine.filesystem import FilesystemMode
from workflows.engine.manifest import TemplateEntry, WorkflowPlan
from workflows.engine.model import Template
from workflows.engine.naming import node_id
from workflows.engine.observer import Observer
from workflows.engine.podip import PodAddresses
from workflows.engine.process import ProcessGroups
from workflows.engine.result import NodeKind, NodePhase, NodeResult
from workflows.engine.variables import Scope, json_text, substitute

if TYPE_CHECKING:
    from workflows.engine.container import Daemon
    from workflows.engine.reuse import Journal


class TaskError(Exception):
    """A task could not be run or finished as declared (the node becomes Error)."""


@dataclass(frozen=True)
class Identity:
    name: str
    uid: str
    namespace: str
    created: datetime


@dataclass(frozen=True)
class Call:
    """Run `entry` as node `node_name` with these arguments (already substituted)."""

    entry: TemplateEntry
    node_name: str
    parameters: Mapping[str, str]
    artifacts: Mapping[str, ArtifactRef]
    globals: Scope


@dataclass(frozen=True)
class Outcome:
    """How a node ended (or that a daemon is up), with its outputs."""

    phase: NodePhase
    message: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, ArtifactRef] = field(default_factory=dict)
    exit_code: int | None = None
    result: str | None = None
    """`outputs.result`: the main container's stdout, one trailing newline trimmed."""
    daemon: "Daemon | None" = None
    """The running daemon when phase is Daemoned; its DAG stops it."""
    pod_ip: str | None = None
    """A Daemoned pod's IP (`{{tasks.<name>.ip}}`): Argo records it for daemons only."""


@dataclass
class NodeRecord:
    """The mutable record behind a NodeResult."""

    name: str
    path: str
    id: str
    kind: NodeKind
    template: str
    phase: NodePhase = NodePhase.RUNNING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    exit_code: int | None = None
    pod_name: str | None = None
    log_keys: list[str] = field(default_factory=list)
    log_path: Path | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    message: str = ""
    progress: tuple[int, int] | None = None
    last_line: str = ""
    reused: str = ""
    result: str | None = None

    def snapshot(self) -> NodeResult:
        """An immutable copy for observers and the result (same field names)."""
        copies = {
            "log_keys": tuple(self.log_keys),
            "parameters": dict(self.parameters),
            "artifacts": dict(self.artifacts),
        }
        return NodeResult(**{**vars(self), **copies})


def workflow_values(plan: WorkflowPlan, identity: Identity) -> dict[str, str]:
    """Argo's global variables: the workflow's name, uid, parameters, labels, annotations..."""
    parameters = [{"name": k, "value": v} for k, v in plan.arguments.items()]
    spec = plan.spec
    values = {
        "workflow.name": identity.name,
        "workflow.uid": identity.uid,
        "workflow.namespace": identity.namespace,
        "workflow.creationTimestamp": identity.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "workflow.mainEntrypoint": plan.entrypoint.template.name,
        "workflow.serviceAccountName": spec.service_account_name or "default",
        "workflow.status": "Running",
        "workflow.parameters": json_text(parameters),
        "workflow.parameters.json": json_text(parameters),
        "workflow.labels": json_text(dict(plan.labels)),
        "workflow.labels.json": json_text(dict(plan.labels)),
        "workflow.annotations": json_text(dict(plan.annotations)),
        "workflow.annotations.json": json_text(dict(plan.annotations)),
        **{f"workflow.parameters.{k}": v for k, v in plan.arguments.items()},
        **{f"workflow.labels.{k}": v for k, v in plan.labels.items()},
        **{f"workflow.annotations.{k}": v for k, v in plan.annotations.items()},
    }
    if spec.priority is not None:
        values["workflow.priority"] = str(spec.priority)
    scheduled = plan.annotations.get("workflows.argoproj.io/scheduled-time")
    if scheduled is not None:
        values["workflow.scheduledTime"] = scheduled
    return values


class RunState:
    """One run's plan, identity, records and limits, shared by every node coroutine."""

    def __init__(
        self,
        plan: WorkflowPlan,
        identity: Identity,
        ctx: EngineContext,
        observer: Observer,
        groups: ProcessGroups,
        journal: "Journal",
        filesystem: FilesystemMode = FilesystemMode.REMAP,
    ) -> None:
        self.plan = plan
        self.journal = journal
        self.identity = identity
        self.ctx = ctx
        self.store = ctx.store
        self.observer = observer
        self.groups = groups
        self.directory = ctx.workdir / identity.name
        self.filesystem = filesystem
        self.global_values: dict[str, str] = workflow_values(plan, identity)
        """Values every template sees; `globalName` outputs are added as they appear."""
        self.global_artifacts: dict[str, ArtifactRef] = {}
        self.started = time.monotonic()
        self.globals = Scope(
            self.global_values,
            created=identity.created,
            dynamic={"workflow.duration": self.duration},
        )
        self.records: dict[str, NodeRecord] = {}
        self.pod_addresses = PodAddresses(identity.uid)
        limit = min(ctx.parallelism, plan.parallelism or math.inf)
        self._pods = asyncio.Semaphore(int(limit))
        self.cancel_reason = "interrupted"
        self.expired = False
        self._uploads: list[asyncio.Task[None]] = []
        self.upload_errors: list[str] = []

    def duration(self) -> str:
        """`{{workflow.duration}}`: seconds since the run started, as Argo formats it."""
        return f"{time.monotonic() - self.started:.6f}"

    def export_globals(self, template: Template, outcome: Outcome) -> None:
        """A node's outputs with a `globalName` become `workflow.outputs.*` values."""
        for parameter in template.outputs.parameters:
            value = outcome.parameters.get(parameter.name)
            if parameter.global_name and value is not None:
                self.global_values[f"workflow.outputs.parameters.{parameter.global_name}"] = value
        for artifact in template.outputs.artifacts:
            ref = outcome.artifacts.get(artifact.name)
            if artifact.global_name and ref is not None:
                self.global_artifacts[artifact.global_name] = ref

    # --- records -------------------------------------------------------------------------

    def path_of(self, node_name: str, template: str) -> str:
        rest = node_name[len(self.identity.name) :]
        return rest.removeprefix(".") or template

    def record(self, node_name: str, kind: NodeKind, template: str) -> NodeRecord:
        if node_name not in self.records:
            self.records[node_name] = NodeRecord(
                name=node_name,
                path=self.path_of(node_name, template),
                id=node_id(self.identity.name, node_name),
                kind=kind,
                template=template,
            )
        return self.records[node_name]

    def observed(self, record: NodeRecord) -> bool:
        """The entrypoint's DAG node is the workflow itself: observers see its tasks only."""
        return record.name != self.identity.name or record.kind is NodeKind.POD

    def begin(self, record: NodeRecord) -> None:
        """A (new attempt of a) node starts running."""
        record.phase = NodePhase.RUNNING
        record.attempts += 1
        record.started_at = record.started_at or datetime.now(UTC)
        record.finished_at = None
        if self.observed(record):
            self.observer.node_started(record.snapshot())

    def update(self, record: NodeRecord) -> None:
        if self.observed(record):
            self.observer.node_updated(record.snapshot())

    def finish(self, record: NodeRecord, outcome: Outcome) -> Outcome:
        record.phase = outcome.phase
        record.message = outcome.message
        record.finished_at = datetime.now(UTC)
        if outcome.exit_code is not None:
            record.exit_code = outcome.exit_code
        record.parameters = dict(outcome.parameters)
        record.result = outcome.result
        record.artifacts = {name: ref.key for name, ref in outcome.artifacts.items()}
        if self.observed(record):
            self.observer.node_finished(record.snapshot())
        return outcome

    def settle(self, node_name: str, kind: NodeKind, template: str, outcome: Outcome) -> None:
        """Record a node that never ran (Skipped, Omitted) or failed before starting."""
        self.finish(self.record(node_name, kind, template), outcome)

    def abort_unfinished(self) -> None:
        """After a deadline cancelled the run, every node still running failed with it."""
        for record in self.records.values():
            if record.phase is NodePhase.RUNNING:
                self.finish(record, Outcome(NodePhase.FAILED, self.cancel_reason))

    def failures(self) -> str:
        """`{{workflow.failures}}`: Argo's JSON list of failed nodes."""
        failed = [
            {
                "displayName": record.path.rsplit(".", 1)[-1],
                "message": record.message,
                "templateName": record.template,
                "phase": record.phase.value,
                "podName": record.pod_name or "",
                "finishedAt": (
                    record.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ") if record.finished_at else ""
                ),
            }
            for record in self.records.values()
            if record.phase.failed and self.observed(record)
        ]
        return json_text(failed)

    # --- limits, keys, uploads -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def pod_slot(self, daemon: bool) -> AsyncIterator[None]:
        """A slot under the run's parallelism. Daemons take none: they serve tasks that need
        slots themselves (a tracker and its workers), so counting them could deadlock."""
        if daemon:
            yield
            return
        async with self._pods:
            yield

    def key_prefix(self, pod: str) -> str:
        key_format = self.ctx.key_format or DEFAULT_KEY_FORMAT
        scope = self.globals.child({"pod.name": pod})
        return substitute(key_format, scope, "EngineContext.key_format").strip("/")

    def background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """S3 work nobody waits for (log archiving); flushed before onExit and the result."""

        async def guarded() -> None:
            try:
                await work
            except MlpipeError as error:
                self.upload_errors.append(f"{what}: {error}")

        self._uploads.append(asyncio.create_task(guarded()))

    async def flush_uploads(self) -> None:
        uploads, self._uploads = self._uploads, []
        if uploads:
            await asyncio.gather(*uploads)
