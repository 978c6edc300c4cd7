"""The rollout report: what deploy rolled out, how each canary step measured, and the
provenance chain it verified, as one static HTML page (steps/core/html_report.py) for the
Argo UI."""

from collections.abc import Mapping, Sequence
from typing import Any

from steps.core.html_report import Markup, page, paragraph, section, table


def rollout_html(rollout: Mapping[str, Any]) -> str:
    """`rollout` is rollout.json's content (steps/deploy/step.py Rollout as a dict)."""
    summary = table(
        ["", ""],
        [
            ["model", rollout["model_name"]],
            ["version (ONNX sha256)", rollout["digest"]],
            ["replaced", rollout["previous_digest"] or "nothing: first deploy, no canary"],
            ["backend", rollout["backend"]],
            ["endpoint", rollout["endpoint"]],
            ["deployed at", rollout["deployed_at"]],
            ["smoke test", f"{rollout['smoke_rows']} rows, max |diff| {rollout['max_abs_diff']}"],
        ],
    )
    return page(
        f"Rollout of {rollout['model_name']} {rollout['digest'][:12]}",
        [
            section("Summary", summary),
            section("Canary analysis", _steps(rollout["canary"])),
            section("Provenance verified", _chain(rollout["provenance"])),
        ],
    )


def _steps(steps: Sequence[Mapping[str, Any]]) -> Markup:
    if not steps:
        return paragraph("No canary: there was no other stable version to compare with.")
    rows = [
        [
            f"{step['percent']}%",
            f"{step['canary_requests']} / {step['stable_requests']}",
            f"{_percent(step['canary_error_rate'])} / {_percent(step['stable_error_rate'])}",
            f"{_ms(step['canary_p99_seconds'])} / {_ms(step['stable_p99_seconds'])}",
            _scores(step),
            _labels(step["labels"]),
            "; ".join(step["breaches"]) or "pass",
        ]
        for step in steps
    ]
    return table(
        [
            "traffic",
            "requests (canary / stable)",
            "error rate",
            "p99 latency",
            "score PSI: live, evaluated, allowed",
            "labelled AUC: canary, stable (live / evaluated)",
            "verdict",
        ],
        rows,
        ["fail" if step["breaches"] else "pass" for step in steps],
    )


def _scores(step: Mapping[str, Any]) -> str:
    """Each score check of the step (steps/deploy/canary.py ScoreCheck) on one line."""
    checks = [
        f"{check['name']}: {check['psi']:.3f}, {check['expected']:.3f}, "
        f"{check['low']:.3f}..{check['high']:.3f}"
        for check in step["scores"]
    ]
    counted = f"({step['canary_scores']} / {step['stable_scores']} scores)"
    return "; ".join(checks) + f" {counted}" if checks else "-"


def _labels(check: Mapping[str, Any] | None) -> str:
    """The step's label check (steps/deploy/canary.py LabelCheck), or why there is none."""
    if check is None:
        return "-"
    stable = (
        "-"
        if check["stable_auc"] is None
        else f"{check['stable_auc']:.3f} / {check['stable_evaluated_auc']:.3f}"
    )
    return (
        f"{check['canary_auc']:.3f} / {check['evaluated_auc']:.3f} ({check['canary_rows']} "
        f"rows), {stable}; shortfall {check['shortfall']:.3f}, allowed {check['allowed']:.3f}"
    )


def _chain(links: Sequence[Mapping[str, str]]) -> Markup:
    return table(["step", "statement"], [[link["step"], link["statement"]] for link in links])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"
