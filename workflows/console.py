"""The console view of a local run: a live table while it runs, a summary when it is done.

Every text that comes from a manifest, a log or the data goes in as `Text`, never as a
string Rich would read as markup: `[/north]` in a category must print as itself.

`ConsoleView` is an engine Observer. On a terminal it keeps a rich Live table of the DAG
(task, status, duration, self-reported progress, last log line) with every log line printed
above it, prefixed by its task; elsewhere (CI, a pipe) it prints plain lines instead.
`summary_table` and `locations_table` describe a finished run: what each step did, and where
every artifact and log sits in the bucket.
"""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from workflows.engine import NodeKind, NodePhase, NodeResult, Observer, RunResult

PHASE_STYLES: dict[NodePhase, str] = {
    NodePhase.RUNNING: "yellow",
    NodePhase.SUCCEEDED: "green",
    NodePhase.FAILED: "bold red",
    NodePhase.ERROR: "bold red",
    NodePhase.SKIPPED: "dim",
    NodePhase.OMITTED: "dim",
    NodePhase.DAEMONED: "cyan",
}
VALUE_WIDTH = 24
LINE_WIDTH = 60


@dataclass
class _Row:
    node: NodeResult
    progress: tuple[int, int] | None = None


class ConsoleView(Observer):
    """Use as a context manager around `run_workflow` so the live display is cleaned up."""

    def __init__(self, console: Console, live: bool | None = None) -> None:
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self._rows: dict[str, _Row] = {}
        # Callbacks arrive on the engine's thread, rendering happens on Live's refresh thread.
        self._lock = threading.Lock()
        self._live: Live | None = None
        self.workflow_name = ""

    def __enter__(self) -> Self:
        if self.live_mode:
            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # --- engine callbacks ----------------------------------------------------------------

    def workflow_started(self, name: str, uid: str) -> None:
        self.workflow_name = name
        self._say(Text.assemble("workflow ", (name, "bold"), f" ({uid})"))

    def node_started(self, node: NodeResult) -> None:
        self._store(node)
        if not self.live_mode:
            attempt = f" (attempt {node.attempts})" if node.attempts > 1 else ""
            self._say(Text.assemble((node.path, "bold"), f" started{attempt}"))

    def node_updated(self, node: NodeResult) -> None:
        self._store(node)
        if not self.live_mode:
            self._say(Text.assemble((node.path, "bold"), " ", _phase(node), _detail(node)))

    def node_progress(self, path: str, done: int, total: int) -> None:
        with self._lock:
            if path in self._rows:
                self._rows[path].progress = (done, total)
        if not self.live_mode:
            self._say(Text.assemble((path, "bold"), f" progress {done}/{total}"))

    def log_line(self, path: str, line: str) -> None:
        self._say(Text.assemble((f"{path} | ", "dim"), line))

    def node_finished(self, node: NodeResult) -> None:
        self._store(node)
        if not self.live_mode:
            took = f" in {_seconds(node.duration)}" if node.duration is not None else ""
            self._say(Text.assemble((node.path, "bold"), " ", _phase(node), took, _detail(node)))

    def workflow_finished(self, result: RunResult) -> None:
        style = "green" if result.succeeded else "bold red"
        line = Text.assemble(
            "workflow ",
            (result.name, "bold"),
            " ",
            (result.phase.value, style),
            f" in {_seconds(result.duration)}",
        )
        if result.message:
            line.append(f": {result.message}")
        self._say(line)

    # --- rendering -----------------------------------------------------------------------

    def _store(self, node: NodeResult) -> None:
        with self._lock:
            row = self._rows.get(node.path)
            progress = node.progress or (row.progress if row else None)
            self._rows[node.path] = _Row(node, progress)

    def _say(self, text: Text) -> None:
        target = self._live.console if self._live is not None else self.console
        target.print(text, highlight=False, soft_wrap=True)

    def _render(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("task", "status", "time", "progress", "outputs", "last log line"):
            table.add_column(column)
        now = datetime.now(UTC)
        with self._lock:
            rows = list(self._rows.values())
        for row in rows:
            node = row.node
            end = node.finished_at or now
            took = (end - node.started_at).total_seconds() if node.started_at else None
            bar: RenderableType = ""
            if row.progress is not None and row.progress[1] > 0:
                done, total = row.progress
                bar = ProgressBar(total=total, completed=done, width=20)
            table.add_row(
                Text(node.path),
                _phase(node),
                _seconds(took),
                bar,
                Text(_outputs(node)),
                Text(_clip(node.last_line, LINE_WIDTH)),
            )
        return table


def summary_table(result: RunResult) -> Table:
    """One row per node: status, duration, attempts and its output parameters."""
    table = Table(title=f"{result.name}: {result.phase.value}", title_justify="left")
    for column in ("step", "status", "duration", "attempts", "outputs"):
        table.add_column(column)
    for node in result.nodes:
        outputs = _outputs(node)
        attempts = str(node.attempts) if node.attempts else ""
        table.add_row(
            Text(node.path), _phase(node), _seconds(node.duration), attempts, Text(outputs)
        )
    return table


def locations_table(result: RunResult) -> Table:
    """Where each task's artifacts and logs are in the artifact repository.

    A DAG's output artifacts are references to its tasks' keys, so only pods are listed.
    """
    table = Table(title="artifacts and logs", title_justify="left")
    for column in ("step", "what", "where"):
        table.add_column(column)
    for node in result.nodes:
        if node.kind is not NodeKind.POD:
            continue
        for name, key in node.artifacts.items():
            table.add_row(Text(node.path), Text(name), Text(result.uri(key)))
        for attempt, key in enumerate(node.log_keys, start=1):
            what = "log" if len(node.log_keys) == 1 else f"log (attempt {attempt})"
            table.add_row(Text(node.path), what, Text(result.uri(key)))
    return table


def _outputs(node: NodeResult) -> str:
    """A node's output parameters (its key numbers: rows, AUC, digest ...), each clipped."""
    return ", ".join(
        f"{name}={_clip(value, VALUE_WIDTH)}" for name, value in node.parameters.items()
    )


def _phase(node: NodeResult) -> Text:
    """The phase, and whether the outputs were reused instead of running the node."""
    text = Text(node.phase.value, style=PHASE_STYLES[node.phase])
    if node.reused:
        text.append(f" ({node.reused})", style="cyan")
    return text


def _detail(node: NodeResult) -> str:
    return f": {node.message}" if node.message else ""


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{int(value % 60):02d}s"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
