"""What a dataset's columns mean, inferred from the data alone: the DataSpec a user would
otherwise write by hand, with the reason for every choice.

From a CSV or Parquet file and the name of its label column: the positive class when the
labels say it (`1`, `true`, `yes`, `>50K` against `0`, `false`, `no`, `<=50K`), the missing
markers the file uses, a row key (a column unique per row: an identifier, never a feature),
which columns are categorical (text, and integers with few values) and which cannot be
features at all (empty, constant, dates, free text, names XGBoost refuses). Anything that
makes the data unusable (no label, a label that is not binary, nothing left to learn from) is
BadInput naming the column. `mlpipe init` writes the result as files the user owns
(steps/data/init.py); `mlpipe run --data FILE --label COLUMN` uses them as they are.
"""

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from steps.core.errors import BadInput
from steps.core.specs import AuditBounds, DataSpec
from steps.data.dataset import label_problem, label_tokens, read_arrow
from steps.data.features import FORBIDDEN_IN_NAMES

MISSING_MARKERS = ("", "?", "NA", "N/A", "NaN", "nan", "null", "NULL")
"""Spellings of a missing value looked for in text columns; `None` and `-` are left out:
they are ordinary categories often enough."""
POSITIVE_TOKENS = frozenset({"1", "true", "yes", "y", "t", "positive", "pos"})
NEGATIVE_TOKENS = frozenset({"0", "false", "no", "n", "f", "negative", "neg"})
MAX_INTEGER_CATEGORIES = 10
"""An integer column with at most this many values is a code (plan 1-3, a 0/1 flag); its
categories sort as text, which for one-digit codes is their numeric order."""
HIGH_CARDINALITY = 50_000
"""Distinct strings from which a text column is free text or an identifier, not a category."""
MAX_DISTINCT_SHARE = 0.5
"""...or when more than this share of its (over 100) values are distinct."""
ID_NAME = re.compile(r"(^|[_\W])(id|key|uuid|guid|index|rownames)$|^id[_\W]", re.IGNORECASE)
MODEL_NAME_LENGTH = 40


@dataclass(frozen=True)
class Choice:
    """One inferred decision and why: rendered as a comment next to it."""

    column: str | None
    decision: str
    reason: str

    def describe(self) -> str:
        where = f"{self.column!r}: " if self.column is not None else ""
        return f"{where}{self.decision} ({self.reason})"


@dataclass(frozen=True)
class Inferred:
    """The DataSpec inferred for a file, its model name, and every choice made."""

    model_name: str
    data: DataSpec
    rows: int
    columns: list[str]
    choices: list[Choice] = field(default_factory=list)

    def reason(self, column: str) -> str:
        """Why `column` has the role it has (the first choice naming it)."""
        return next((c.reason for c in self.choices if c.column == column), "")


def model_name_for(path: Path) -> str:
    """The file's stem as a model name (lower-case letters, digits and dashes)."""
    ascii_stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "-", ascii_stem.lower()).strip("-")[:MODEL_NAME_LENGTH]
    return name.strip("-") or "model"


def infer(path: Path, label: str, positive_class: str | None = None) -> Inferred:
    """Infer the DataSpec of the file at `path` with `label` as its binary label."""
    where = str(path)
    markers = marker_counts(path)
    found = sorted({m for counts in markers.values() for m in counts}, key=MISSING_MARKERS.index)
    missing_values = list(dict.fromkeys(["", *found]))
    raw = read_arrow(where, DataSpec(label=label, missing_values=missing_values), None)
    if label not in raw.column_names:
        raise BadInput(
            f"data {where}: no label column {label!r}; columns are "
            f"{', '.join(map(repr, raw.column_names))}"
        )
    rows = raw.num_rows
    choices: list[Choice] = []
    labels = raw.column(label).to_pandas()
    positive = _positive_class(labels, label, positive_class, where, choices)
    if found:
        places = "; ".join(
            f"{marker!r} in " + ", ".join(f"{c} ({n})" for c, n in _columns_with(markers, marker))
            for marker in found
        )
        choices.append(Choice(None, f"missing markers {found}", f"found {places}"))
    row_key: str | None = None
    categorical: list[str] = []
    exclude: list[str] = []
    bounds = AuditBounds()
    for name in raw.column_names:
        if name == label:
            continue
        column = raw.column(name)
        role, reason = _role(name, column, rows, bounds.max_null_share)
        if role == "id" and row_key is None:
            row_key = name
            choices.append(Choice(name, "row key", reason + "; an identifier, never a feature"))
        elif role in ("id", "exclude"):
            exclude.append(name)
            choices.append(Choice(name, "excluded", reason))
        elif role == "categorical":
            categorical.append(name)
            choices.append(Choice(name, "categorical", reason))
        else:
            choices.append(Choice(name, "numeric", reason))
    features = [c for c in raw.column_names if c not in {label, row_key, *exclude}]
    if not features:
        roles = "; ".join(c.describe() for c in choices if c.column not in (None, label))
        raise BadInput(
            f"data {where}: no feature columns left to train on besides the label {label!r} "
            f"({roles or 'no other column'})"
        )
    data = DataSpec(
        label=label,
        positive_class=positive,
        categorical=categorical,
        missing_values=missing_values,
        row_key=row_key,
        exclude=exclude,
    )
    return Inferred(model_name_for(path), data, rows, list(raw.column_names), choices)


def marker_counts(path: Path) -> dict[str, dict[str, int]]:
    """Per text column of the file, how often each missing marker occurs (raw text, before
    any marker is read as missing)."""
    try:
        if path.suffix.lower() == ".csv":
            # Nothing is missing here: a marker in a numeric column makes that column text.
            options = pacsv.ConvertOptions(
                null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False
            )
            table = pacsv.read_csv(path, convert_options=options)
        else:
            table = pq.read_table(path)
    except (pa.ArrowException, OSError):
        return {}  # read_arrow, which runs next, says what is wrong with the file
    markers = pa.array(MISSING_MARKERS, pa.string())
    counts: dict[str, dict[str, int]] = {}
    for name in table.column_names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        present = column.filter(pc.is_in(column, value_set=markers))
        if len(present):
            values = pc.value_counts(present).to_pylist()
            counts[name] = {v["values"]: v["counts"] for v in values}
    return counts


def _columns_with(markers: dict[str, dict[str, int]], marker: str) -> list[tuple[str, int]]:
    return [(column, counts[marker]) for column, counts in markers.items() if marker in counts]


def _positive_class(
    labels: pd.Series,
    label: str,
    given: str | None,
    where: str,
    choices: list[Choice],
) -> str | int | bool:
    """The positive class: `given` (matched like the label's values), else the obvious one."""
    tokens = label_tokens(labels.dropna())
    values = sorted(set(tokens))
    problem = label_problem(labels, label, values[0] if values else "")
    if problem is not None and "positive_class" not in problem:
        raise BadInput(f"data {where}: {problem}")
    originals = {token: labels[tokens.index[tokens == token][0]] for token in values}
    counts = tokens.value_counts()
    shares = ", ".join(
        f"{originals[t]!r} ({counts[t]} rows, {counts[t] / len(tokens):.1%})" for t in values
    )
    if given is not None:
        token = str(label_tokens(pd.Series([given])).iloc[0])
        if token not in originals:
            raise BadInput(
                f"data {where}: --positive-class {given!r} is not a value of label {label!r} "
                f"(values: {shares})"
            )
        chosen, reason = token, "given with --positive-class"
    else:
        chosen, reason = _obvious(values, originals, label, shares, where)
    value = originals[chosen]
    choices.append(Choice(label, f"label, positive class {value!r}", f"{reason}; {shares}"))
    return _plain(value)


def _obvious(
    values: list[str], originals: dict[str, object], label: str, shares: str, where: str
) -> tuple[str, str]:
    first, second = values
    for positive, negative in ((first, second), (second, first)):
        if positive in POSITIVE_TOKENS and negative in NEGATIVE_TOKENS:
            return positive, f"{originals[positive]!r} reads as yes"
        if positive.startswith(">") and negative.startswith("<"):
            return positive, "the '>' side of a threshold"
    raise BadInput(
        f"data {where}: which value of label {label!r} is the positive class? It has "
        f"{shares}; say it with --positive-class, e.g. --positive-class "
        f"{_shell_word(originals[first])}"
    )


def _shell_word(value: object) -> str:
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z0-9_.-]+", text) else "'" + text.replace("'", "") + "'"


def _plain(value: object) -> str | int | bool:
    """A label value as DataSpec holds it (numpy scalars become Python's)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return str(value)


def _role(name: str, column: pa.ChunkedArray, rows: int, max_null_share: float) -> tuple[str, str]:
    """`id`, `exclude`, `categorical` or `numeric`, and why."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    nulls = column.null_count
    if any(c in name for c in FORBIDDEN_IN_NAMES):
        return "exclude", f"XGBoost refuses {' '.join(FORBIDDEN_IN_NAMES)} in feature names"
    if nulls == rows:
        return "exclude", "empty: missing in every row"
    if nulls / rows > max_null_share:
        return "exclude", (
            f"missing in {nulls / rows:.0%} of rows; the audit allows {max_null_share:.0%}"
        )
    textual = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    integer = pa.types.is_integer(kind)
    if not (textual or integer or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return "exclude", f"{kind} values: derive numeric or categorical features from it"
    distinct = pc.count_distinct(column).as_py()
    if distinct == 1:
        return "exclude", "one value in every row"
    if nulls == 0 and distinct == rows and (textual or (integer and _id_like(name, column))):
        return "id", f"unique in each of the {rows} rows"
    if textual:
        present = rows - nulls
        wide = distinct > 100 and distinct > MAX_DISTINCT_SHARE * present
        if distinct >= HIGH_CARDINALITY or wide:
            return "exclude", (
                f"{distinct} distinct strings in {present} rows: free text or an identifier, "
                "not a category"
            )
        return "categorical", f"text, {distinct} values"
    if integer and distinct <= MAX_INTEGER_CATEGORIES:
        return "categorical", f"integers with {distinct} values: codes"
    return "numeric", f"{'integers' if integer else 'numbers'}, {distinct} distinct values"


def _id_like(name: str, column: pa.ChunkedArray) -> bool:
    """Unique integers that name themselves an id, or number the rows 1..N (any order)."""
    if ID_NAME.search(name):
        return True
    low, high = pc.min_max(column).values()
    return int(high.as_py()) - int(low.as_py()) + 1 == len(column)
