"""`summary`: the run summary the workflow's onExit handler writes, and its notification.

It runs after every other task, however the run ended, and knows only what both engines
provide: Argo's `{{workflow.status}}` and `{{workflow.failures}}`, and the run's folder in the
artifact repository (`<run prefix><pod name>/...`), where every pod that ran left its log,
its HTML reports and its `parameters/` folder (the step's key numbers). From those it writes
run-summary.json and run-summary.html (every step, its status, its key outputs, links to its
reports) and, when a webhook URL is configured, posts one short message.

A webhook that cannot be reached is reported (stderr, `notified=false`, the JSON) but does
not fail the step: the run's outcome is decided by its tasks, not by a chat server.
"""

import json
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from steps.core import html_report as h
from steps.core.errors import BadInput
from steps.core.harness import Outcome, StepContext
from steps.core.names import PARAMETERS_DIR, Artifact, Env, Param
from steps.core.outputs import report_progress
from steps.core.registry import RUN_PREFIX, STEPS, WORKFLOW_FAILURES, WORKFLOW_NAME, WORKFLOW_STATUS
from steps.core.specs import SummarySpec
from steps.core.store import ArtifactStore

NOT_RUN = "Not run"
SUCCEEDED = "Succeeded"
FAILED_PHASES = frozenset({"Failed", "Error"})
WEBHOOK_ATTEMPTS = 3
_HASH = re.compile(r"\d+")
_ARTIFACT_NAMES = {
    artifact.filename: artifact.name for step in STEPS.values() for artifact in step.artifacts
}


@dataclass(frozen=True)
class Failure:
    """One entry of Argo's `{{workflow.failures}}`."""

    name: str
    template: str
    phase: str
    message: str
    pod: str


@dataclass(frozen=True)
class Link:
    name: str
    uri: str
    ui_url: str | None = None


@dataclass(frozen=True)
class PodSummary:
    """One pod of the run (or one template that never ran), as the summary shows it."""

    template: str
    pod: str | None
    phase: str
    message: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    reports: list[Link] = field(default_factory=list)


@dataclass(frozen=True)
class RunSummary:
    workflow: str
    status: str
    url: str | None
    pods: list[PodSummary]
    failures: list[Failure]
    notification: str = "not configured"

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    def headline(self) -> str:
        """The one-line message a webhook receives."""
        text = f"mlpipe run {self.workflow}: {self.status}"
        failed = [p for p in self.pods if p.phase in FAILED_PHASES]
        if failed:
            first = failed[0]
            text += f"; {first.template} {first.phase.lower()}"
            if first.message:
                text += f": {first.message}"
        return text + (f" ({self.url})" if self.url else "")


def parse_failures(text: str) -> list[Failure]:
    """Argo marshals the failed nodes as a JSON list, or `null` when there are none."""
    try:
        raw = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as error:
        raise BadInput(f"--workflow-failures is not JSON: {error}") from error
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise BadInput("--workflow-failures: expected a JSON list of objects (Argo's format)")
    return [
        Failure(
            name=str(item.get("displayName", "")),
            template=str(item.get("templateName", "")),
            phase=str(item.get("phase", "")),
            message=str(item.get("message", "")),
            pod=str(item.get("podName", "")),
        )
        for item in raw
    ]


def template_of(pod: str, workflow: str, templates: list[str]) -> str | None:
    """Argo's v2 pod names are `<workflow>-<template>-<fnv32a(node name)>`."""
    matches = [
        template
        for template in templates
        if pod.startswith(f"{workflow}-{template}-")
        and _HASH.fullmatch(pod.removeprefix(f"{workflow}-{template}-"))
    ]
    return max(matches, key=len) if matches else None


def collect(
    store: ArtifactStore,
    run_prefix: str,
    workflow: str,
    status: str,
    failures: list[Failure],
    spec: SummarySpec,
) -> RunSummary:
    """Who ran, how it ended and what it left, from the run's folder and the failures."""
    files: dict[str, list[str]] = {}
    for key in store.list(run_prefix):
        pod, _, rest = key.removeprefix(run_prefix).partition("/")
        if rest and template_of(pod, workflow, spec.templates) is not None:
            files.setdefault(pod, []).append(rest)
    failed = {failure.pod: failure for failure in failures if failure.pod}
    pods: list[PodSummary] = []
    for template in spec.templates:
        names = sorted(
            pod
            for pod in {*files, *failed}
            if template_of(pod, workflow, spec.templates) == template
        )
        if not names:
            pods.append(PodSummary(template, None, NOT_RUN))
        for pod in names:
            failure = failed.get(pod)
            pods.append(
                PodSummary(
                    template,
                    pod,
                    failure.phase if failure else SUCCEEDED,
                    failure.message if failure else "",
                    _outputs(store, f"{run_prefix}{pod}/", files.get(pod, [])),
                    _reports(store, f"{run_prefix}{pod}/", files.get(pod, []), workflow, spec),
                )
            )
    url = (
        f"{spec.argo_ui.rstrip('/')}/workflows/{spec.namespace}/{workflow}"
        if spec.argo_ui
        else None
    )
    return RunSummary(workflow, status, url, pods, failures)


def _outputs(store: ArtifactStore, prefix: str, files: list[str]) -> dict[str, str]:
    outputs = {}
    for rest in files:
        folder, _, name = rest.partition("/")
        if folder == PARAMETERS_DIR and name and "/" not in name:
            # Written by Argo's executor on a cluster: there is no digest to verify.
            outputs[name] = store.get_unverified_bytes(prefix + rest).decode(errors="replace")
    return outputs


def _reports(
    store: ArtifactStore, prefix: str, files: list[str], workflow: str, spec: SummarySpec
) -> list[Link]:
    links = []
    for rest in files:
        if not rest.endswith(".html") or "/" in rest:
            continue
        pod = prefix.rstrip("/").rsplit("/", 1)[-1]
        artifact = _ARTIFACT_NAMES.get(rest)
        ui_url = None
        if spec.argo_ui and artifact:
            # A node's ID and its v2 pod name end in the same hash of the node name.
            node_id = f"{workflow}-{pod.rsplit('-', 1)[-1]}"
            ui_url = (
                f"{spec.argo_ui.rstrip('/')}/artifact-files/{spec.namespace}/workflow/"
                f"{workflow}/{node_id}/outputs/{artifact}"
            )
        links.append(Link(artifact or rest, store.uri(prefix + rest), ui_url))
    return links


def render_html(summary: RunSummary) -> str:
    rows = []
    classes: list[str | None] = []
    for pod in summary.pods:
        outputs = ", ".join(f"{k}={v}" for k, v in sorted(pod.outputs.items()))
        reports = h.Markup(
            "<br>".join(
                f'<a href="{h.escape(link.ui_url)}">{h.escape(link.name)}</a>'
                if link.ui_url
                else f"{h.escape(link.name)}: {h.escape(link.uri)}"
                for link in pod.reports
            )
        )
        rows.append([pod.template, pod.pod or "", pod.phase, pod.message, outputs, reports])
        classes.append(
            "fail" if pod.phase in FAILED_PHASES else ("pass" if pod.phase == SUCCEEDED else None)
        )
    parts = [
        h.paragraph(f"Status: {summary.status}", "pass" if summary.succeeded else "fail"),
        h.table(["step", "pod", "status", "message", "key outputs", "reports"], rows, classes),
    ]
    if summary.url:
        parts.append(
            h.Markup(f'<p><a href="{h.escape(summary.url)}">The run in the Argo UI</a></p>')
        )
    if summary.failures:
        parts.append(
            h.section(
                "Failed nodes",
                h.table(
                    ["node", "template", "phase", "message"],
                    [[f.name, f.template, f.phase, f.message] for f in summary.failures],
                ),
            )
        )
    parts.append(h.paragraph(f"Notification: {summary.notification}"))
    return h.page(f"Run summary: {summary.workflow}", parts)


def notify(url: str, summary: RunSummary, timeout: float) -> str:
    """POST the headline (Slack-style `text`, plus the fields a bot may want); returns what
    happened. Messages never contain the URL: a webhook URL is a credential."""
    import httpx  # here: most runs configure no webhook, and httpx costs a tenth of a second

    body = {
        "text": summary.headline(),
        "workflow": summary.workflow,
        "status": summary.status,
        "url": summary.url,
    }
    transport = httpx.HTTPTransport(retries=WEBHOOK_ATTEMPTS - 1)
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.post(url, json=body)
    except httpx.HTTPError as error:
        return f"failed: {type(error).__name__}: {error}"
    if response.is_error:
        return f"failed: the webhook answered HTTP {response.status_code}"
    return "sent"


def run_summary(
    store: ArtifactStore,
    run_prefix: str,
    workflow: str,
    status: str,
    failures: list[Failure],
    spec: SummarySpec,
    webhook_url: str | None,
    out: Path,
    progress_file: Path | None = None,
) -> RunSummary:
    report_progress(progress_file, 0, 2)
    summary = collect(store, run_prefix, workflow, status, failures, spec)
    report_progress(progress_file, 1, 2)
    if webhook_url:
        outcome = notify(webhook_url, summary, spec.webhook_timeout_seconds)
        summary = replace(summary, notification=outcome)
        if outcome != "sent":
            print(f"warning: run summary notification {outcome}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.RUN_SUMMARY.filename).write_text(json.dumps(asdict(summary), indent=2) + "\n")
    (out / Artifact.RUN_SUMMARY_REPORT.filename).write_text(render_html(summary))
    report_progress(progress_file, 2, 2)
    print(summary.headline())
    return summary


def run(ctx: StepContext) -> Outcome:
    run_prefix = ctx.get(RUN_PREFIX)
    spec = ctx.spec(SummarySpec)
    failures = parse_failures(ctx.get(WORKFLOW_FAILURES))
    if not run_prefix.strip("/"):
        raise BadInput("--run-prefix is empty: the summary would list the whole bucket")
    summary = run_summary(
        ctx.store,
        run_prefix,
        ctx.get(WORKFLOW_NAME),
        ctx.get(WORKFLOW_STATUS),
        failures,
        spec,
        ctx.environ.get(Env.WEBHOOK_URL.value),
        ctx.out,
        ctx.progress_file,
    )
    return Outcome(parameters={Param.NOTIFIED: summary.notification == "sent"})
