"""Small, self-contained HTML reports that Argo shows as artifacts.

Reports are opened from an artifact store, often offline, so a page is one file: inline CSS,
inline SVG, no scripts, no external URLs. Every value is escaped unless it is already Markup
built by these helpers, so data from the user's file cannot inject markup.
"""

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Markup(str):
    """HTML that is already safe: built here, never from unescaped input."""


PASS = "#2e7d32"
FAIL = "#c62828"
WARN = "#ef6c00"
NEUTRAL = "#1565c0"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
tr.pass td:first-child{border-left:4px solid #2e7d32}
tr.fail td:first-child{border-left:4px solid #c62828}
tr.warn td:first-child{border-left:4px solid #ef6c00}
"""


def escape(value: object) -> Markup:
    """Text as HTML; Markup passes through, floats get 6 significant digits."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, float):
        return Markup(f"{value:.6g}")
    return Markup(html.escape("" if value is None else str(value), quote=True))


def paragraph(text: object, css_class: str | None = None) -> Markup:
    attribute = f' class="{escape(css_class)}"' if css_class else ""
    return Markup(f"<p{attribute}>{escape(text)}</p>")


def section(heading: str, *parts: Markup) -> Markup:
    return Markup(f"<h2>{escape(heading)}</h2>\n" + "\n".join(parts))


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    row_classes: Sequence[str | None] | None = None,
) -> Markup:
    """A plain table; `row_classes` (e.g. "pass", "fail", "warn") mark rows with a colour."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if row_classes is not None else None
        attribute = f' class="{escape(css)}"' if css else ""
        cells = "".join(f"<td>{escape(cell)}</td>" for cell in row)
        body.append(f"<tr{attribute}>{cells}</tr>")
    return Markup(f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>")


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    color: str = NEUTRAL


def bar_chart(bars: Sequence[Bar], width: int = 480, scale_max: float | None = None) -> Markup:
    """Horizontal bars with their values, as inline SVG (no fonts or scripts to load)."""
    row, label_width, value_width = 24, 140, 70
    top = max([scale_max or 0.0, *(b.value for b in bars)]) or 1.0
    plot = width - label_width - value_width
    parts = []
    for index, bar in enumerate(bars):
        y = index * row
        length = max(0.0, bar.value) / top * plot
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 16}" text-anchor="end">{escape(bar.label)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" '
            f'fill="{escape(bar.color)}"/>'
            f'<text x="{label_width + length + 6:.1f}" y="{y + 16}">{escape(bar.value)}</text>'
        )
    height = max(1, len(bars)) * row
    return Markup(
        f'<svg width="{width}" height="{height}" '
        f'font-size="12" font-family="sans-serif" role="img">' + "".join(parts) + "</svg>"
    )


def page(title: str, sections: Sequence[Markup]) -> str:
    """A whole HTML document; `sections` are Markup from the helpers above."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def provenance_section(
    onnx_label: str, onnx_digest: str, model_digest: str, dataset: str
) -> Markup:
    """Which model and data a report is about, the same way in every model report."""
    rows = [
        [f"{onnx_label} (sha256)", onnx_digest],
        ["XGBoost model (sha256)", model_digest],
        ["dataset", dataset],
    ]
    return section("Provenance", table(["artifact", "identity"], rows))
