"""The quantize step's report: `quantize-report.json` and its static HTML table."""

from pydantic import BaseModel, ConfigDict

from steps.core import html_report as html
from steps.core.names import Encoding
from steps.quantize.calibration import Calibration
from steps.quantize.measure import Measurement


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parity(_Record):
    """The gate on the reference export: its probabilities against XGBoost's."""

    encoding: Encoding
    rows: int
    max_abs_diff: float
    worst_row: int
    tolerance: float
    passed: bool


class Candidate(_Record):
    measurement: Measurement
    eligible: bool
    reasons: list[str]
    """Why the candidate is not eligible; empty when it is."""


class QuantizeReport(_Record):
    """`quantize-report.json`."""

    model_digest: str
    onnx_digest: str
    """sha256 of the chosen model.onnx: what evaluate scores and deploy serves."""
    dataset_uri: str
    encoding: Encoding
    reason: str
    reference: Encoding
    target_opset: int
    input: str
    output: str
    parity: Parity
    tolerances: dict[str, object]
    xgboost_auc: float
    calibration: Calibration
    """Fitted on the validation split; every encoding ends with it."""
    test_ece_before: float
    """ECE of XGBoost's own probabilities on the test split."""
    test_ece_after: float
    """ECE of the calibrated probabilities (what is served) on the test split."""
    slice_column: str | None
    candidates: list[Candidate]
    notes: list[str]
    versions: dict[str, str]


def render_report(report: QuantizeReport) -> str:
    """One table row per candidate, the chosen one first among equals, then per-slice AUC."""
    reference = next(c for c in report.candidates if c.measurement.encoding is report.reference)
    reference_bytes = reference.measurement.bytes
    rows, classes = [], []
    for candidate in report.candidates:
        m = candidate.measurement
        chosen = m.encoding is report.encoding
        verdict = "chosen" if chosen else ("eligible" if candidate.eligible else "rejected")
        rows.append(
            [m.encoding, verdict, "; ".join(candidate.reasons) or "-", m.bytes,
             f"{m.bytes / reference_bytes:.3f}", m.gzip_bytes, m.max_abs_diff,
             m.auc_delta, _worst_slice_delta(m), f"{m.session_ms:.2f}",
             f"{m.latency_p50_us:.1f}", f"{m.latency_p99_us:.1f}",
             round(m.batch_rows_per_second)]
        )  # fmt: skip
        classes.append("pass" if chosen else (None if candidate.eligible else "fail"))
    headers = [
        "encoding", "verdict", "reasons", "bytes", f"size vs {report.reference}", "gzip bytes",
        "max |Δp|", "AUC Δ", "worst slice AUC Δ", "session ms", "p50 µs (1 row)",
        "p99 µs (1 row)", "rows/s (batch 1024)",
    ]  # fmt: skip
    bars = [
        html.Bar(c.measurement.encoding, c.measurement.bytes,
                 html.PASS if c.measurement.encoding is report.encoding else html.NEUTRAL)
        for c in report.candidates
    ]  # fmt: skip
    tolerance_rows = [[key, value] for key, value in report.tolerances.items()]
    sections = [
        html.section("Choice", html.paragraph(report.reason)),
        _calibration_section(report),
        html.section(
            "Candidates",
            html.table(headers, rows, classes),
            html.paragraph(
                f"Differences are against XGBoost on {report.parity.rows} test rows "
                f"(AUC {report.xgboost_auc:.6f}). Timings are ONNX Runtime on this machine, "
                "interleaved across candidates.",
                "muted",
            ),
            html.bar_chart(bars, width=640),
        ),
        html.section("Tolerances", html.table(["setting", "value"], tolerance_rows)),
    ]
    if report.slice_column is not None:
        sections.append(_slice_section(report))
    parity = report.parity
    sections.append(
        html.section(
            "Parity gate",
            html.table(
                ["export", "rows", "max |Δp|", "worst row", "tolerance", "result"],
                [
                    [
                        parity.encoding,
                        parity.rows,
                        parity.max_abs_diff,
                        parity.worst_row,
                        parity.tolerance,
                        "pass" if parity.passed else "fail",
                    ]
                ],
                ["pass" if parity.passed else "fail"],
            ),
        )
    )
    sections.extend(html.paragraph(note, "muted") for note in report.notes)
    sections.append(
        html.provenance_section(
            "chosen ONNX model", report.onnx_digest, report.model_digest, report.dataset_uri
        )
    )
    return html.page(f"Quantize: {report.encoding}", sections)


def _worst_slice_delta(measurement: Measurement) -> float | str:
    judged = [s.auc_delta for s in measurement.slices if s.judged and s.auc_delta is not None]
    return max(judged, key=abs) if judged else "-"


def _slice_section(report: QuantizeReport) -> html.Markup:
    first = report.candidates[0].measurement.slices
    headers = [str(report.slice_column), "rows", "judged"] + [
        f"AUC Δ {c.measurement.encoding}" for c in report.candidates
    ]
    rows = []
    for index, slice_ in enumerate(first):
        deltas = [c.measurement.slices[index].auc_delta for c in report.candidates]
        rows.append(
            [slice_.value, slice_.rows, "yes" if slice_.judged else "no",
             *("undefined" if d is None else d for d in deltas)]
        )  # fmt: skip
    return html.section(f"AUC change by {report.slice_column}", html.table(headers, rows))


def _calibration_section(report: QuantizeReport) -> html.Markup:
    c = report.calibration
    rows = [
        ["validation", c.rows, f"{c.ece_before:.4f}", f"{c.ece_after:.4f}"],
        ["test", report.parity.rows, f"{report.test_ece_before:.4f}",
         f"{report.test_ece_after:.4f}"],
    ]  # fmt: skip
    losses = ", ".join(f"{method} {loss:.4f}" for method, loss in c.log_loss.items())
    return html.section(
        "Calibration",
        html.paragraph(
            f"{c.method}: p = sigmoid({c.scale:.6g} x margin + {c.shift:.6g}). {c.reason}. "
            f"Validation log loss: {losses}."
        ),
        html.table(["split", "rows", "ECE before", "ECE after"], rows),
    )
