"""`model-card.html`: the model card as one static page for the Argo UI and the registry.

Rendered from the card record alone (steps/model_card/card.py), with the shared report
helpers: inline CSS and SVG, no scripts, nothing fetched, every value escaped.
"""

from collections.abc import Sequence

from steps.core import html_report as html
from steps.evaluate.report import reliability_svg
from steps.model_card.card import Dataset, Description, ModelCard, PerformanceMetric


def render_card(card: ModelCard) -> str:
    details = card.model_details
    analysis = card.quantitative_analysis
    verdict = "passed" if analysis.gate.passed else "FAILED"
    return html.page(
        f"Model card: {details.name} {details.version.name[:19]}",
        [
            html.paragraph(details.overview or "No overview given (model_card.overview)."),
            html.paragraph(
                f"Evaluation gate {verdict} on {analysis.test_rows} test rows; AUC "
                f"{analysis.gate.auc:.4f} (minimum {analysis.gate.min_auc:g}). "
                f"{details.version.diff}."
            ),
            _details(card),
            _use(card),
            _data(card.model_parameters.data),
            _metrics(card),
            _calibration(card),
            _champion(card),
            _robustness(card),
            _quantization(card),
            _provenance(card),
        ],
    )


def _details(card: ModelCard) -> html.Markup:
    details = card.model_details
    owners = "; ".join(
        f"{owner.name} ({owner.contact})" if owner.contact else owner.name
        for owner in details.owners
    )
    rows = [
        ["name", details.name],
        ["version", details.version.name],
        ["date", details.version.date],
        ["owners", owners or "-"],
        ["licenses", ", ".join(lic.identifier for lic in details.licenses) or "-"],
        ["published at", details.path],
        ["architecture", card.model_parameters.model_architecture],
    ]
    parts = [html.table(["", ""], rows)]
    if details.documentation:
        parts.append(html.paragraph(details.documentation))
    if details.references:
        parts.append(_list("References", [ref.reference for ref in details.references]))
    return html.section("Model details", *parts)


def _use(card: ModelCard) -> html.Markup:
    considerations = card.considerations
    parameters = card.model_parameters
    risks = [
        [risk.name, risk.mitigation_strategy or "-"]
        for risk in considerations.ethical_considerations
    ]
    return html.section(
        "Intended use",
        html.paragraph(f"Output: {parameters.output_format}."),
        _described("Users", considerations.users),
        _described("Use cases", considerations.use_cases),
        _described("Limitations", considerations.limitations),
        _described("Tradeoffs", considerations.tradeoffs),
        html.table(["ethical consideration", "mitigation"], risks)
        if risks
        else html.paragraph("Ethical considerations: none given."),
    )


def _data(datasets: Sequence[Dataset]) -> html.Markup:
    rows = []
    classes: list[str | None] = []
    for dataset in datasets:
        audit = "-"
        if dataset.audit is not None:
            outcome = "passed" if dataset.audit.passed else "FAILED"
            audit = (
                f"{outcome}: {dataset.audit.critical_failures} critical failure(s), "
                f"{dataset.audit.warnings} warning(s)"
            )
            classes.append("pass" if dataset.audit.passed else "fail")
        else:
            classes.append(None)
        span, found = "-", dataset.time_range
        if found is not None:
            span = f"{found.column}: {found.start} .. {found.end}"
        rows.append([dataset.name, dataset.rows, dataset.digest, span, audit, dataset.link])
    sensitive = datasets[0].sensitive.sensitive_data if datasets else []
    return html.section(
        "Data",
        html.table(["dataset", "rows", "digest", "time range", "audit", "location"], rows, classes),
        html.paragraph(f"Sensitive columns: {', '.join(sensitive) or 'none declared'}."),
    )


def _metrics(card: ModelCard) -> html.Markup:
    analysis = card.quantitative_analysis
    overall = [m for m in analysis.performance_metrics if m.slice is None]
    slices = [m for m in analysis.performance_metrics if m.slice is not None]
    bars = [html.Bar(m.slice or "", m.value) for m in slices]
    return html.section(
        f"Metrics (test split, {analysis.confidence:.0%} intervals)",
        html.table(["metric", "value", "interval"], [_row(m) for m in overall]),
        html.table(["slice", "AUC", "interval"], [[m.slice, *_row(m)[1:]] for m in slices])
        if slices
        else html.paragraph("No slice could be scored."),
        html.bar_chart(bars, scale_max=1.0),
    )


def _row(metric: PerformanceMetric) -> list[object]:
    interval = metric.confidence_interval
    span = "-" if interval is None else f"{interval.lower_bound:.4f}..{interval.upper_bound:.4f}"
    return [metric.type, metric.value, span]


def _calibration(card: ModelCard) -> html.Markup:
    calibration = card.quantitative_analysis.calibration
    return html.section(
        "Calibration",
        html.paragraph(
            f"Expected calibration error {calibration.ece:.4f} on the test split; the booster's "
            f"own probabilities: {calibration.ece_uncalibrated:.4f}. Calibration: "
            f"{calibration.method}, fitted on {calibration.fitted_rows} validation rows "
            f"({calibration.reason})."
        ),
        reliability_svg(calibration.reliability),
    )


def _champion(card: ModelCard) -> html.Markup:
    champion = card.quantitative_analysis.champion
    if champion is None:
        return html.section("Champion comparison", html.paragraph(card.model_details.version.diff))
    rows = [
        ["overall", champion.overall.challenger, champion.overall.champion, champion.overall.drop]
    ] + [
        [s.name, s.auc.challenger, s.auc.champion, s.auc.drop] for s in champion.slices if s.judged
    ]
    return html.section(
        "Champion comparison (AUC, same test rows)",
        html.paragraph(f"Against sha256:{champion.champion_digest}."),
        html.table(["slice", "this model", "serving model", "drop"], rows),
    )


def _robustness(card: ModelCard) -> html.Markup:
    analysis = card.quantitative_analysis
    perturbed = [
        [p.name, p.description, p.rows, p.auc, p.auc_change, p.error or "-"]
        for p in analysis.robustness
    ]
    checks = [[c.name, c.kind, c.feature, c.severity, c.message] for c in analysis.behaviour]
    return html.section(
        "Robustness and behaviour",
        html.table(["perturbation", "what", "rows", "AUC", "AUC change", "error"], perturbed),
        html.table(
            ["behavioural check", "kind", "feature", "severity", "result"],
            checks,
            ["pass" if c.passed else "fail" for c in analysis.behaviour],
        )
        if checks
        else html.paragraph("No behavioural checks configured."),
    )


def _quantization(card: ModelCard) -> html.Markup:
    q = card.model_parameters.quantization
    rows: list[list[object]] = [
        ["encoding", q.encoding.value],
        ["why", q.reason],
        ["size", f"{q.bytes} bytes ({q.bytes / q.baseline_bytes:.3f} of the opset-1 export)"],
        ["max |probability change| vs XGBoost", q.max_abs_diff],
        ["AUC change vs XGBoost", q.auc_delta],
        [
            "parity of the reference export",
            f"{q.parity_max_abs_diff:.2g} (tolerance {q.parity_tolerance:g})",
        ],
    ]
    return html.section("Quantized model", html.table(["", ""], rows))


def _provenance(card: ModelCard) -> html.Markup:
    p = card.model_details.provenance
    digests = [
        ["data (canonical)", p.data_digest],
        ["dataset (splits and shards)", p.dataset_digest],
        ["XGBoost model (sha256)", p.model_digest],
        ["ONNX model (sha256)", p.onnx_digest],
        ["config", p.config_digest or "-"],
        ["code version", p.code_version or "-"],
    ]
    chain: list[list[object]] = [
        [
            link.step,
            "yes" if link.signed else "no",
            link.statement,
            "; ".join(f"{s.name} {s.sha256[:12]}" for s in link.subjects),
        ]
        for link in p.chain
    ]
    return html.section(
        "Provenance",
        html.table(["what", "digest"], digests),
        html.table(["step", "signed", "statement", "produced (sha256)"], chain),
    )


def _described(heading: str, items: Sequence[Description]) -> html.Markup:
    if not items:
        return html.paragraph(f"{heading}: none given.")
    return _list(heading, [item.description for item in items])


def _list(heading: str, items: Sequence[str]) -> html.Markup:
    entries = "".join(f"<li>{html.escape(item)}</li>" for item in items)
    return html.Markup(f"<p>{html.escape(heading)}:</p>\n<ul>{entries}</ul>")
