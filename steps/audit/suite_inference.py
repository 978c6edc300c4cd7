"""A GX-native expectation suite inferred from the data's profile, with GX Core itself.

GX Core 1.x has no profiler any more: the profile is computed with its Metrics API
(`Batch.compute_metrics`: row count, null counts, distinct values, min/max) on the frame the
audit validates (read_table through the DataSpec), and the suite is built from GX's own
expectation classes, so it serialises exactly as a hand-written one does. Each expectation
says in `meta.severity` (and GX's own `severity`) whether it stops the pipeline, and in
`notes` why it was chosen:

- critical: the columns the model and the pipeline need (every column seen, kept present), the
  label's two values and no missing labels, the row key present and unique, each feature's type;
- warning: each categorical feature's value set, each numeric feature's range widened by a
  margin, each feature's null share with a margin: live data moves, and the audit's built-in
  checks bound the harm (unseen categories, null shares) where it matters.
"""

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.expectations.core.expect_column_values_to_be_between import (
    ExpectColumnValuesToBeBetween,
)
from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
    ExpectColumnValuesToBeInSet,
)
from great_expectations.expectations.core.expect_column_values_to_be_in_type_list import (
    ExpectColumnValuesToBeInTypeList,
)
from great_expectations.expectations.core.expect_column_values_to_be_unique import (
    ExpectColumnValuesToBeUnique,
)
from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
    ExpectColumnValuesToNotBeNull,
)
from great_expectations.expectations.core.expect_table_columns_to_match_set import (
    ExpectTableColumnsToMatchSet,
)
from great_expectations.expectations.expectation import Expectation
from great_expectations.metrics.batch.row_count import BatchRowCount
from great_expectations.metrics.column.descriptive_stats import ColumnDescriptiveStats
from great_expectations.metrics.column.distinct_values import ColumnDistinctValues
from great_expectations.metrics.column.null_count import ColumnNullCount
from great_expectations.metrics.metric import Metric
from great_expectations.metrics.metric_results import MetricErrorResult

from steps.audit.gx_context import frame_batches
from steps.core.errors import BadInput
from steps.core.specs import DataSpec

CRITICAL, WARNING = "critical", "warning"
RANGE_MARGIN = 0.1
"""Numeric ranges are widened by this share of the observed range on each side."""
NULL_MARGIN = 0.02
"""Null shares may grow by this much (or double, whichever is more) before a warning."""
MAX_VALUE_SET = 100
"""A categorical feature with more values gets no value-set expectation: too many to list."""
NUMBER_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "bool",
]
"""pandas dtypes of a numeric column as read_table returns it (ints with missing values
become float64)."""
TEXT_TYPES = ["str"]
"""A categorical column holds strings (the audit hands GX object columns to check them)."""
INFERRED_META_KEY = "mlpipe_inferred"
"""The suite's `meta` key that says it was inferred, from what, and which choices were made."""


def infer_suite(
    frame: pd.DataFrame,
    data: DataSpec,
    name: str,
    origin: dict[str, Any],
) -> dict[str, Any]:
    """The suite's JSON for `frame`; `origin` (source, command, choices) goes in its meta."""
    features = [
        str(c)
        for c in frame.columns
        if c not in {data.label, *data.exclude, *([data.row_key] if data.row_key else [])}
    ]
    categorical = [c for c in features if c in set(data.categorical)]
    # Flags (booleans) have no range worth bounding; their type is checked like any number.
    numeric = [
        c
        for c in features
        if c not in set(data.categorical) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    profile = _profile(frame, data.label, features, categorical, numeric)
    rows = int(profile["rows"])
    expectations: list[Expectation] = [
        ExpectTableColumnsToMatchSet(
            column_set=[str(c) for c in frame.columns],
            exact_match=False,
            **_marked(
                CRITICAL,
                "every column of the data the suite was inferred from; "
                "new columns are allowed (the audit warns about them)",
            ),
        ),
        ExpectColumnValuesToNotBeNull(
            column=data.label, **_marked(CRITICAL, "a row without a label cannot train")
        ),
        ExpectColumnValuesToBeInSet(
            column=data.label,
            value_set=sorted(profile["values"][data.label], key=str),
            **_marked(CRITICAL, "the label's two classes"),
        ),
    ]
    if data.row_key is not None:
        why = "the row key: it places each row in its split"
        expectations += [
            ExpectColumnValuesToNotBeNull(column=data.row_key, **_marked(CRITICAL, why)),
            ExpectColumnValuesToBeUnique(column=data.row_key, **_marked(CRITICAL, why)),
        ]
    for column in features:
        share = profile["nulls"][column] / rows if rows else 0.0
        kind = TEXT_TYPES if column in categorical else NUMBER_TYPES
        expectations.append(
            ExpectColumnValuesToBeInTypeList(
                column=column,
                type_list=kind,
                **_marked(
                    CRITICAL,
                    "the model was trained on "
                    + ("text categories" if column in categorical else "numbers"),
                ),
            )
        )
        allowed = min(1.0, max(share + NULL_MARGIN, 2 * share))
        expectations.append(
            ExpectColumnValuesToNotBeNull(
                column=column,
                mostly=round(1.0 - allowed, 4),
                **_marked(
                    WARNING,
                    f"{share:.2%} missing when inferred; at most {allowed:.2%} before a warning",
                ),
            )
        )
    for column in categorical:
        values = sorted(str(v) for v in profile["values"][column])
        if len(values) > MAX_VALUE_SET:
            continue
        expectations.append(
            ExpectColumnValuesToBeInSet(
                column=column,
                value_set=values,
                **_marked(WARNING, f"the {len(values)} values seen; a new one is reported"),
            )
        )
    for column in numeric:
        low, high = profile["ranges"][column]
        if low is None or high is None:
            continue
        bottom, top = _widened(low, high, integers=_integers(frame[column]))
        expectations.append(
            ExpectColumnValuesToBeBetween(
                column=column,
                min_value=bottom,
                max_value=top,
                **_marked(
                    WARNING,
                    f"seen [{low:g}, {high:g}], widened by "
                    f"{RANGE_MARGIN:.0%} of the range" + ("; never negative" if low >= 0 else ""),
                ),
            )
        )
    suite = gx.ExpectationSuite(
        name=name,
        expectations=expectations,
        meta={INFERRED_META_KEY: origin},
        notes=(
            "Inferred from the data's profile (steps/audit/suite_inference.py). severity: "
            "critical stops the pipeline, warning is reported. Edit freely: this file is yours."
        ),
    )
    suite_json: dict[str, Any] = suite.to_json_dict()
    suite_json.pop("id", None)
    for expectation in suite_json["expectations"]:
        expectation.pop("id", None)
    return suite_json


def _marked(severity: str, why: str) -> dict[str, Any]:
    """meta.severity (what the audit reads) and GX's own severity agree; notes say why."""
    return {"meta": {"severity": severity}, "severity": severity, "notes": why}


def _profile(
    frame: pd.DataFrame,
    label: str,
    features: Sequence[str],
    categorical: Sequence[str],
    numeric: Sequence[str],
) -> dict[str, Any]:
    """Row count, null counts (features), distinct values (label, categorical) and min/max
    (numeric), computed by GX's Metrics API on one batch."""
    metrics: list[Metric[Any]] = [BatchRowCount()]
    keys: list[tuple[str, str]] = [("rows", "")]
    for column in features:
        metrics.append(ColumnNullCount(column=column))
        keys.append(("nulls", column))
    for column in [label, *categorical]:
        metrics.append(ColumnDistinctValues(column=column))
        keys.append(("values", column))
    for column in numeric:
        metrics.append(ColumnDescriptiveStats(column=column))
        keys.append(("ranges", column))
    batch = frame_batches().get_batch(batch_parameters={"dataframe": frame})
    # GX draws a progress bar for metrics whatever the context's settings: not on our stderr.
    with contextlib.redirect_stderr(io.StringIO()):
        results = batch.compute_metrics(metrics)
    profile: dict[str, Any] = {"rows": 0, "nulls": {}, "values": {}, "ranges": {}}
    for (kind, column), result in zip(keys, results, strict=True):
        if isinstance(result, MetricErrorResult):
            raise BadInput(
                f"profiling column {column!r} with GX failed: {result.value.exception_message}"
            )
        value = result.value
        if kind == "rows":
            profile["rows"] = value
        elif kind == "nulls":
            profile["nulls"][column] = int(value)
        elif kind == "values":
            profile["values"][column] = [_plain(v) for v in value if not _missing(v)]
        else:
            low, high = float(value.min), float(value.max)
            finite = math.isfinite(low) and math.isfinite(high)
            profile["ranges"][column] = (low, high) if finite else (None, None)
    return profile


def _widened(low: float, high: float, integers: bool) -> tuple[float, float]:
    margin = RANGE_MARGIN * (high - low) or RANGE_MARGIN * max(abs(low), 1.0)
    bottom, top = low - margin, high + margin
    if low >= 0:
        bottom = max(0.0, bottom)
    if integers:
        return float(math.floor(bottom)), float(math.ceil(top))
    return float(f"{bottom:.6g}"), float(f"{top:.6g}")


def _integers(column: pd.Series) -> bool:
    values = column.dropna()
    return bool(len(values)) and bool((values == values.round()).all())


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: object) -> object:
    """numpy scalars as JSON-ready Python values."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
