"""What a user watches: the console view prints data and log text verbatim, never as markup,
and the live table shows progress and key outputs."""

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from workflows.console import ConsoleView, locations_table, summary_table
from workflows.engine import NodeKind, NodePhase, NodeResult, RunResult
from workflows.engine.result import WorkflowPhase

BRACKETS = "expected value_set=[yes, no] in [/north] and [bold]x[/bold]"
START = datetime(2026, 1, 1, tzinfo=UTC)


def node(phase: NodePhase, **fields: object) -> NodeResult:
    values: dict[str, object] = {
        "path": "audit[0]",
        "name": "run.audit[0]",
        "id": "n1",
        "kind": NodeKind.POD,
        "template": "audit",
        "phase": phase,
        "started_at": START,
        **fields,
    }
    return NodeResult(**values)  # type: ignore[arg-type]


def rendered(*renderables: object) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=400, force_terminal=False)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


def test_plain_lines_print_log_and_message_text_verbatim() -> None:
    buffer = io.StringIO()
    with ConsoleView(Console(file=buffer, width=400, force_terminal=False)) as view:
        view.workflow_started("run", "uid")
        view.node_started(node(NodePhase.RUNNING))
        view.log_line("audit[0]", BRACKETS)
        view.node_finished(node(NodePhase.FAILED, message=BRACKETS, finished_at=START))
    output = buffer.getvalue()
    assert f"audit[0] | {BRACKETS}" in output
    assert f"audit[0] Failed in 0.0s: {BRACKETS}" in output
    assert view.workflow_name == "run"


def test_summary_and_locations_print_outputs_and_keys_verbatim() -> None:
    finished = node(
        NodePhase.SUCCEEDED,
        finished_at=START + timedelta(seconds=3),
        parameters={"reason": "[/north]", "auc": "0.91"},
        artifacts={"report": "wf/[x]/audit-report.html"},
    )
    result = RunResult(
        "run", "uid", "ns", "bucket", WorkflowPhase.SUCCEEDED, "", START, START, (finished,)
    )
    text = rendered(summary_table(result), locations_table(result))
    assert "reason=[/north], auc=0.91" in text
    assert "s3://bucket/wf/[x]/audit-report.html" in text
    assert "audit[0]" in text


def test_the_live_table_shows_progress_and_key_outputs() -> None:
    view = ConsoleView(Console(file=io.StringIO(), width=400), live=False)
    view.node_started(node(NodePhase.RUNNING, parameters={"rows": "4000"}))
    view.node_progress("audit[0]", 3, 4)
    view.log_line("audit[0]", BRACKETS)
    table = rendered(view._render())
    assert "audit[0]" in table and "Running" in table and "rows=4000" in table
    assert "━" in table, "a progress bar for 3/4"
