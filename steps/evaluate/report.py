"""The evaluation's static HTML report: gate, overall metrics with intervals, slices worst
first, reliability diagrams, the champion comparison, robustness and behavioural checks.
Inline SVG only (steps/core/html_report.py): it is opened offline from the artifact store."""

from collections.abc import Sequence

from steps.core import html_report as html
from steps.evaluate.evaluation import Evaluation
from steps.evaluate.gate import Comparison
from steps.evaluate.metrics import Intervals, Metrics, ReliabilityBin

NOT_DEFINED = "n/a"
"""What a slice of one class shows for each metric."""
TOO_SMALL = "too small to judge"
"""What a slice below min_slice_rows shows instead of an interval."""

METRICS = [
    ("auc", "AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("log_loss", "log loss"),
    ("brier", "Brier score"),
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("ece", "expected calibration error (plug-in)"),
    ("ece_debiased", "expected calibration error, debiased (gate)"),
]
METHODS = {
    "auc": "DeLong",
    "pr_auc": "logit (Boyd 2013)",
    "log_loss": "normal, mean",
    "brier": "normal, mean",
    "accuracy": "bootstrap",
    "precision": "bootstrap",
    "recall": "bootstrap",
    "f1": "bootstrap",
    "ece": "bin rates resampled, percentile",
    "ece_debiased": "Kumar 2019; basic bootstrap",
}


def reliability_svg(bins: Sequence[ReliabilityBin], size: int = 300) -> html.Markup:
    """Mean score against positive rate per bin, over the diagonal of perfect calibration;
    each point's area grows with its bin's rows."""
    pad = 36
    plot = size - 2 * pad

    def x(value: float) -> float:
        return pad + value * plot

    def y(value: float) -> float:
        return size - pad - value * plot

    largest = max((b.rows for b in bins), default=1)
    points = " ".join(f"{x(b.mean_score):.1f},{y(b.positive_rate):.1f}" for b in bins)
    dots = "".join(
        f'<circle cx="{x(b.mean_score):.1f}" cy="{y(b.positive_rate):.1f}" '
        f'r="{2 + 5 * (b.rows / largest) ** 0.5:.1f}" fill="{html.NEUTRAL}">'
        f"<title>{html.escape(f'{b.low:g}-{b.high:g}: {b.rows} rows')}</title></circle>"
        for b in bins
    )
    ticks = "".join(
        f'<text x="{x(t):.1f}" y="{size - pad + 14}" text-anchor="middle">{t:g}</text>'
        f'<text x="{pad - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>'
        for t in (0.0, 0.5, 1.0)
    )
    return html.Markup(
        f'<svg width="{size}" height="{size}" font-size="11" font-family="sans-serif" '
        'role="img">'
        f'<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" stroke="#999"/>'
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#999" '
        'stroke-dasharray="4 3"/>'
        f'<polyline points="{points}" fill="none" stroke="{html.NEUTRAL}"/>{dots}{ticks}'
        f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">mean score</text>'
        f'<text x="12" y="{size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {size / 2})">positive rate</text></svg>'
    )


def render_report(evaluation: Evaluation) -> str:
    gate = evaluation.gate
    verdict = "pass" if gate.passed else "fail"
    sections = [
        _gate(evaluation),
        html.section(
            f"Overall ({evaluation.metrics.rows} rows, {evaluation.metrics.positives} positive, "
            f"threshold {evaluation.metrics.threshold:g})",
            _metrics_table(evaluation.metrics, evaluation.intervals),
        ),
        _calibration(evaluation),
    ]
    if evaluation.slices:
        sections.append(_slices(evaluation))
    if evaluation.champion is not None:
        sections.append(_champion(evaluation, evaluation.champion))
    if evaluation.robustness:
        sections.append(_robustness(evaluation))
    if evaluation.behaviour:
        sections.append(_behaviour(evaluation))
    sections.append(
        html.provenance_section(
            "ONNX model", evaluation.onnx_digest, evaluation.model_digest, evaluation.dataset_uri
        )
    )
    return html.page(f"Evaluation: {verdict} (AUC {gate.auc:.4f})", sections)


def _gate(evaluation: Evaluation) -> html.Markup:
    gate = evaluation.gate
    if gate.passed:
        summary = html.paragraph("Every gate check passed: the model may be promoted.")
    else:
        summary = html.table(
            ["check", "breach"],
            [[b.check, b.message] for b in gate.breaches],
            ["fail"] * len(gate.breaches),
        )
    parts = [summary]
    if gate.warnings:
        parts.append(
            html.table(["warning"], [[w] for w in gate.warnings], ["warn"] * len(gate.warnings))
        )
    if evaluation.champion is None:
        parts.append(
            html.paragraph("No stable model in the registry: no champion to compare.", "muted")
        )
    return html.section("Gate", *parts)


def _metrics_table(metrics: Metrics, intervals: Intervals) -> html.Markup:
    level = f"{intervals.confidence:.0%} interval"
    rows = []
    for key, title in METRICS:
        interval = getattr(intervals, key)
        rows.append([title, getattr(metrics, key), interval.low, interval.high, METHODS[key]])
    return html.table(["metric", "value", f"{level} low", "high", "method"], rows)


def _calibration(evaluation: Evaluation) -> html.Markup:
    parts = [
        html.paragraph(
            f"Overall: ECE {evaluation.metrics.ece:.4f} (plug-in), "
            f"{evaluation.metrics.ece_debiased:.4f} debiased"
        ),
        reliability_svg(evaluation.reliability),
    ]
    if evaluation.worst_slice is not None:
        parts += [
            html.paragraph(f"Worst slice, {evaluation.worst_slice}"),
            reliability_svg(evaluation.worst_slice_reliability),
        ]
    return html.section("Calibration (reliability diagram)", *parts)


def _slices(evaluation: Evaluation) -> html.Markup:
    rows: list[list[object]] = []
    classes: list[str | None] = []
    bars = []
    for entry in evaluation.slices:
        judged = "yes" if entry.judged else "no"
        if entry.metrics is None:
            # One class only: AUC, PR-AUC and the rest are undefined, not 0 or 1.
            rows.append([entry.name, entry.rows, entry.positives, judged, *[NOT_DEFINED] * 6])
            classes.append(None)
            continue
        m, ci = entry.metrics, entry.intervals
        interval = TOO_SMALL if ci is None else f"{ci.auc.low:.4f}..{ci.auc.high:.4f}"
        rows.append(
            [entry.name, m.rows, m.positives, judged, m.auc, interval, m.pr_auc, m.log_loss,
             m.f1, m.ece]
        )  # fmt: skip
        below = entry.judged and m.auc < evaluation.gate.min_auc
        classes.append("fail" if below else None)
        if entry.judged:
            bars.append(html.Bar(entry.name, m.auc, html.FAIL if below else html.PASS))
    headers = ["slice", "rows", "positives", "judged", "AUC", "AUC interval", "PR-AUC",
               "log loss", "F1", "ECE"]  # fmt: skip
    return html.section(
        "Slices, worst AUC first",
        html.table(headers, rows, classes),
        html.bar_chart(bars, scale_max=1.0),
        html.paragraph(
            "Slices with fewer rows than min_slice_rows are listed but neither judged nor "
            f"charted, and show no interval ({TOO_SMALL}); slices holding one class show "
            f"{NOT_DEFINED}; bars in red are below the minimum AUC ({evaluation.gate.min_auc:g}).",
            "muted",
        ),
    )


def _champion(evaluation: Evaluation, comparison: Comparison) -> html.Markup:
    overall = comparison.overall
    head = ["", "rows", "challenger AUC", "champion AUC", "drop", "drop interval"]

    rows: list[list[object]] = [
        ["overall", evaluation.metrics.rows, overall.challenger, overall.champion, overall.drop,
         f"{overall.interval.low:.4f}..{overall.interval.high:.4f}"]
    ]  # fmt: skip
    breached = {b.slice for b in evaluation.gate.breaches}
    classes: list[str | None] = [None]
    for entry in comparison.slices:
        d = entry.auc
        classes.append("fail" if entry.name in breached else None)
        rows.append(
            [entry.name, entry.rows, d.challenger, d.champion, d.drop,
             f"{d.interval.low:.4f}..{d.interval.high:.4f}"]
        )  # fmt: skip
    return html.section(
        f"Champion comparison (stable model {comparison.champion_digest[:12]})",
        html.table(head, rows, classes),
        html.paragraph(
            f"Best-worst slice AUC gap: {comparison.gap:.4f} "
            f"(champion {comparison.champion_gap:.4f}); champion ECE {comparison.champion_ece:.4f}."
        ),
    )


def _robustness(evaluation: Evaluation) -> html.Markup:
    rows = [
        [p.name, p.description, p.rows, p.error or p.auc, p.auc_change, p.log_loss_change,
         p.brier_change, p.mean_abs_score_change]
        for p in evaluation.robustness
    ]  # fmt: skip
    classes: list[str | None] = ["fail" if p.error else None for p in evaluation.robustness]
    return html.section(
        "Robustness (perturbed test rows)",
        html.table(
            [
                "perturbation",
                "what",
                "rows",
                "AUC",
                "AUC change",
                "log loss change",
                "Brier change",
                "mean |score change|",
            ],
            rows,
            classes,
        ),
    )


def _behaviour(evaluation: Evaluation) -> html.Markup:
    rows = [
        [c.name, c.kind, c.severity, "pass" if c.passed else "fail", c.message]
        for c in evaluation.behaviour
    ]
    classes: list[str | None] = [
        "pass" if c.passed else ("fail" if c.severity == "gate" else "warn")
        for c in evaluation.behaviour
    ]
    return html.section(
        "Behavioural checks",
        html.table(["check", "kind", "severity", "result", "detail"], rows, classes),
    )
