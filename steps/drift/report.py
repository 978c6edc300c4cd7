"""The drift check's static HTML report, shown by Argo next to drift-result.json.

The decision and its reason first, then every feature sorted by drift, then a histogram of
reference against current for the most drifted features, the model's scores and, with
labels, its performance. One file, inline SVG, like the other reports (steps/core/html_report.py).
"""

from steps.core import html_report as html
from steps.drift.result import DriftResult, FeatureDrift, Histogram, Performance

REFERENCE_COLOR = "#9e9e9e"
CURRENT_COLOR = html.NEUTRAL


def render_report(result: DriftResult) -> str:
    decision = result.decision
    verdict = "retrain" if decision.retrain else "keep the stable model"
    sections = [
        html.section(
            "Decision",
            html.table(
                ["decision", "reason"],
                [[verdict, decision.reason]],
                ["fail" if decision.retrain else "pass"],
            ),
            html.paragraph(
                f"Window {result.window_uri}: {result.window_rows} rows, checked "
                f"{result.checked_at}.",
                "muted",
            ),
        )
    ]
    if result.model is not None:
        model = result.model
        sections.append(
            html.section(
                "Stable model",
                html.table(
                    ["name", "ONNX digest", "trained on", "deployed", "age (days)"],
                    [
                        [
                            model.name,
                            model.digest,
                            model.dataset_uri,
                            model.deployed_at,
                            round(model.age_days, 2),
                        ]
                    ],
                ),
            )
        )
    if result.features:
        sections.append(_feature_section(result))
    if result.prediction is not None:
        prediction = result.prediction
        sections.append(
            html.section(
                "Prediction drift",
                html.paragraph(
                    f"Scores of the stable model: PSI {prediction.psi:.3f}, KS "
                    f"{prediction.ks_statistic:.3f} (p {prediction.p_value:.2g}) against its "
                    f"{prediction.reference_rows} test rows."
                ),
                histogram(prediction.histogram),
            )
        )
    if result.performance is not None:
        sections.append(_performance_section(result.performance))
    thresholds = result.thresholds.model_dump()
    sections.append(
        html.section(
            "Thresholds", html.table(["setting", "value"], [[k, v] for k, v in thresholds.items()])
        )
    )
    return html.page(f"Drift check: {verdict}", sections)


def _feature_section(result: DriftResult) -> html.Markup:
    rows = [
        [
            f.name,
            f.kind,
            f.psi,
            f"{f.test} {f.statistic:.4g}",
            f.p_value,
            f.effect,
            f"{f.missing_reference:.1%} / {f.missing_current:.1%}",
            f"{f.unseen_share:.1%}"
            + (f" ({', '.join(f.unseen_values)})" if f.unseen_values else ""),
            "; ".join(f.reasons) or "-",
        ]
        for f in result.features
    ]
    worst = result.features[: result.thresholds.report_features]
    charts = [_feature_chart(feature) for feature in worst]
    return html.section(
        "Features, most drifted first",
        html.table(
            [
                "feature",
                "kind",
                "PSI",
                "test",
                "p-value",
                "effect",
                "missing (ref / now)",
                "unseen",
                "drifted because",
            ],
            rows,
            ["fail" if f.drifted else None for f in result.features],
        ),
        html.paragraph(
            "effect: KS distance for numeric features, Cramér's V for categorical ones. "
            "Bars: grey reference (training), blue current (window).",
            "muted",
        ),
        *charts,
    )


def _feature_chart(feature: FeatureDrift) -> html.Markup:
    return html.Markup(
        f"<h3>{html.escape(feature.name)} (PSI {feature.psi:.3f})</h3>\n"
        + histogram(feature.histogram)
    )


def _performance_section(performance: Performance) -> html.Markup:
    if not performance.judged:
        return html.section(
            "Performance",
            html.paragraph(f"Not judged: {performance.note}."),
            html.paragraph(
                f"At evaluation: AUC {performance.baseline_auc:.4f} on "
                f"{performance.baseline_rows} test rows.",
                "muted",
            ),
        )
    rows = [
        ["rows", performance.baseline_rows, performance.labelled_rows, ""],
        ["AUC", performance.baseline_auc, performance.window_auc, performance.auc_p_value],
        [
            "calibration gap (mean score - positive rate)",
            performance.baseline_calibration_gap,
            performance.window_calibration_gap,
            performance.calibration_p_value,
        ],
        ["positive rate", performance.baseline_positive_rate, performance.window_positive_rate, ""],
    ]
    return html.section(
        "Performance",
        html.table(
            ["metric", "at evaluation (test split)", "on the window", "p-value of the change"],
            rows,
        ),
        html.paragraph("; ".join(performance.reasons) or "No decay.", "muted"),
    )


def histogram(data: Histogram, width: int = 520) -> html.Markup:
    """Reference and current share per bucket as paired horizontal bars (inline SVG)."""
    label_width, value_width, bar, gap = 150, 60, 9, 8
    plot = width - label_width - value_width
    top = max([*data.reference, *data.current, 1e-9])
    parts = []
    for index, bucket in enumerate(data.buckets):
        y = index * (2 * bar + gap)
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar + 4}" text-anchor="end">'
            f"{html.escape(bucket)}</text>"
        )
        for offset, (share, color) in enumerate(
            [(data.reference[index], REFERENCE_COLOR), (data.current[index], CURRENT_COLOR)]
        ):
            length = share / top * plot
            top_y = y + offset * bar
            parts.append(
                f'<rect x="{label_width}" y="{top_y}" width="{length:.1f}" height="{bar - 1}" '
                f'fill="{color}"/><text x="{label_width + length + 4:.1f}" y="{top_y + bar - 1}">'
                f"{share:.1%}</text>"
            )
    height = max(1, len(data.buckets)) * (2 * bar + gap)
    return html.Markup(
        f'<svg width="{width}" height="{height}" font-size="10" font-family="sans-serif" '
        f'role="img">' + "".join(parts) + "</svg>"
    )
