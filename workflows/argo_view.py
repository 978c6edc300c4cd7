"""Showing runs on an Argo server: status tables, the live `watch`, run lists and logs.

Everything here works on the snapshots of workflows/argo_client.py, so it never talks to a
server itself. `watch` polls; on a terminal it redraws a live table, elsewhere (CI, a pipe)
it prints one line per change, which is also what tests read.
"""

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from workflows.argo_client import ArgoClient, LogLine, NodeView, RunView
from workflows.pipeline import TaskName

PHASE_STYLES = {
    "Pending": "dim",
    "Running": "yellow",
    "Succeeded": "green",
    "Failed": "bold red",
    "Error": "bold red",
    "Skipped": "dim",
    "Omitted": "dim",
}
DIGEST_PREFIX = 12
DATASET_LABEL = "mlpipe/dataset-digest"
"""Read when a run carries it (a later trigger may know the digest up front); otherwise the
digest is the provenance step's output parameter."""


def phase_text(phase: str) -> Text:
    return Text(phase, style=PHASE_STYLES.get(phase, ""))


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m{int(seconds % 60):02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def pods(run: RunView) -> list[NodeView]:
    """The run's pods in the order they started (not yet started ones last)."""
    never = datetime.max.replace(tzinfo=UTC)
    found = [node for node in run.nodes if node.type == "Pod"]
    return sorted(found, key=lambda node: (node.started_at or never, node.display_name))


def status_table(run: RunView, link: str) -> Table:
    """One row per pod: phase, duration, self-reported progress, outputs or message."""
    title = Text.assemble((run.name, "bold"), " ", phase_text(run.phase))
    if run.progress:
        title.append(f" {run.progress}")
    table = Table(title=title, title_justify="left", caption=link, caption_justify="left")
    for column in ("step", "status", "duration", "progress", "outputs / message"):
        table.add_column(column)
    for node in pods(run):
        detail = node.message or ", ".join(f"{k}={v}" for k, v in node.outputs.items())
        table.add_row(
            node.display_name,
            phase_text(node.phase),
            duration_text(node.duration),
            node.progress or "",
            detail,
        )
    return table


def dataset_digest(run: RunView) -> str:
    """The run's dataset digest (shortened), from a label or the provenance step."""
    digest = run.labels.get(DATASET_LABEL, "")
    for node in run.nodes:
        if node.template == TaskName.PROVENANCE and node.outputs.get("dataset_digest"):
            digest = node.outputs["dataset_digest"]
    return digest[:DIGEST_PREFIX]


def runs_table(runs: Iterable[RunView]) -> Table:
    table = Table(title="recent runs", title_justify="left")
    for column in ("name", "status", "started", "duration", "model", "dataset", "trigger"):
        table.add_column(column)
    for run in runs:
        started = run.started_at or run.created_at
        took = None
        if run.started_at is not None:
            end = run.finished_at or datetime.now(UTC)
            took = (end - run.started_at).total_seconds()
        table.add_row(
            run.name,
            phase_text(run.phase),
            started.strftime("%Y-%m-%d %H:%M:%S") if started else "",
            duration_text(took),
            run.labels.get("mlpipe/model", ""),
            dataset_digest(run),
            run.labels.get("mlpipe/trigger", ""),
        )
    return table


def watch(
    client: ArgoClient,
    name: str,
    console: Console,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> RunView:
    """Poll the run until it ends; returns its last snapshot."""
    link = client.link(name)
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                run = client.get(name)
                live.update(status_table(run, link))
                if run.done:
                    return run
                sleep(interval)
    seen: dict[str, tuple[str, str | None]] = {}
    while True:
        run = client.get(name)
        for node in pods(run):
            state = (node.phase, node.progress)
            if seen.get(node.id) != state:
                seen[node.id] = state
                line = Text.assemble((node.display_name, "bold"), " ", phase_text(node.phase))
                if node.progress:
                    line.append(f" {node.progress}")
                if node.phase in ("Failed", "Error") and node.message:
                    line.append(f": {node.message}")
                console.print(line, highlight=False, soft_wrap=True)
        if run.done:
            console.print(status_table(run, link))
            return run
        sleep(interval)


def step_pods(run: RunView, step: str) -> list[NodeView]:
    """The pods of a step, by task name (`worker` gives every worker) or template name."""
    return [
        node
        for node in pods(run)
        if step in (node.display_name, node.template) or node.display_name.startswith(f"{step}(")
    ]


def print_logs(lines: Iterable[LogLine], run: RunView, console: Console) -> int:
    """Each line prefixed by its step; returns how many lines there were."""
    names = {node.pod_name: node.display_name for node in run.nodes if node.pod_name}
    count = 0
    for line in lines:
        prefix = names.get(line.pod, line.pod)
        console.print(Text.assemble((f"{prefix} | ", "dim"), line.content), soft_wrap=True)
        count += 1
    return count
