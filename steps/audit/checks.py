"""The audit's built-in checks: what every pipeline needs, whatever the user's suite says.

On the data alone: row count, a binary label with both classes and a sane class balance,
the null share per column, duplicated rows, near-constant columns, leakage (a feature that
reproduces the label, or predicts it almost perfectly on its own) and label conflicts
(identical feature rows with different labels, a poisoning signal). Against the reference
profile of the data the stable model was trained on, when there is one: the schema, unseen
categories, null shares that grew, the label rate, and a label-rate shift inside one slice
far beyond the shift overall (the other poisoning signal).

Every check is whole-column numpy/pandas work (one factorisation per column, one row hash),
so on a million rows it costs a fraction of the GX suite it runs beside.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.core.specs import AuditBounds, DataSpec
from steps.data.dataset import label_problem, label_tokens
from steps.data.infer import HIGH_CARDINALITY
from steps.data.profile import CategoricalProfile, GroupProfile, NumericProfile, ReferenceProfile
from steps.drift.stats import bin_counts, psi

RARE_CATEGORY_ROWS = 20
"""Categories with fewer rows are pooled before judging a categorical feature's predictive
power, so an ID-like column does not look like a perfect predictor by memorising rows."""

_HASH_MULTIPLIER = np.uint64(0x100000001B3)  # the 64-bit FNV prime: mixes one column's hash in
Codes = npt.NDArray[np.int32]
"""Factorised codes: every feature's are held at once, and half the bytes of numpy's intp
keep the audit within twice its DataFrame (a column has fewer than 2**31 distinct values)."""
Labels = npt.NDArray[np.int8]


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


class Source(StrEnum):
    BUILTIN = "builtin"
    REFERENCE = "reference"
    EXPECTATION = "expectation"


@dataclass(frozen=True)
class Check:
    """One line of the audit: what was checked, where, against what, and what was seen."""

    name: str
    column: str | None
    severity: Severity
    passed: bool
    observed: str
    bound: str
    source: Source

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        return f"{self.name}{where}: observed {self.observed}; expected {self.bound}"


@dataclass(frozen=True)
class Reference:
    """The reference profile of the stable model's training data, and where it came from."""

    profile: ReferenceProfile
    source: str


@dataclass(frozen=True)
class _Column:
    """A column factorised once: codes (-1 missing), distinct values, numeric or not."""

    codes: Codes
    uniques: npt.NDArray[np.generic]
    numeric: bool


def builtin_checks(
    frame: pd.DataFrame, data: DataSpec, bounds: AuditBounds, reference: Reference | None
) -> list[Check]:
    """Every built-in check on `frame` (as read_table returns it: labels not yet mapped)."""
    rows = len(frame)
    checks = [_row_count(rows, bounds), _label_present(frame, data)]
    labels = None
    if data.label in frame.columns:
        column = frame[data.label]
        problem = label_problem(column, data.label, data.positive_class)
        shares = label_tokens(column.dropna()).value_counts(normalize=True).sort_index()
        seen = ", ".join(f"{value} {share:.1%}" for value, share in shares.items())
        checks.append(
            _check(
                "label is binary with both classes",
                data.label,
                problem is None,
                problem or seen,
                f"2 classes, one of them {data.positive_class!r}, no missing values",
            )
        )
        if problem is None:
            positive = label_tokens(pd.Series([data.positive_class])).iloc[0]
            labels = (label_tokens(column) == positive).to_numpy(dtype=np.int8)
            checks.append(_class_balance(labels, bounds))
    not_features = {data.label, *data.exclude, *([data.row_key] if data.row_key else [])}
    features = [str(c) for c in frame.columns if c not in not_features]
    columns = {name: _factorise(frame[name]) for name in features}
    # Excluded columns are not read by anything downstream: their nulls do not matter.
    used = [str(c) for c in frame.columns if c != data.label and c not in data.exclude]
    checks += _null_shares(frame, used, bounds)
    checks += _identifiers_and_text(frame, data, columns, rows)
    checks += _near_constant(columns, rows, bounds)
    checks += _duplicates_and_conflicts(columns, rows, labels, bounds)
    if labels is not None:
        checks += _leakage(columns, labels, bounds)
    if reference is not None:
        checks += reference_checks(frame, data, bounds, reference, columns, labels)
    return checks


def _check(
    name: str,
    column: str | None,
    passed: bool,
    observed: str,
    bound: str,
    severity: Severity = Severity.CRITICAL,
    source: Source = Source.BUILTIN,
) -> Check:
    return Check(name, column, severity, passed, observed, bound, source)


def _row_count(rows: int, bounds: AuditBounds) -> Check:
    bound = f">= {bounds.min_rows}" + (f" and <= {bounds.max_rows}" if bounds.max_rows else "")
    passed = rows >= bounds.min_rows and (bounds.max_rows is None or rows <= bounds.max_rows)
    return _check("row count within bounds", None, passed, f"{rows} rows", bound)


def _label_present(frame: pd.DataFrame, data: DataSpec) -> Check:
    present = data.label in frame.columns
    observed = "present" if present else "absent"
    return _check("label column present", data.label, present, observed, "present")


def _class_balance(labels: Labels, bounds: AuditBounds) -> Check:
    share = float(labels.mean())
    low, high = bounds.min_positive_share, bounds.max_positive_share
    return _check(
        "class balance within bounds",
        None,
        low <= share <= high,
        f"{share:.2%} positive",
        f"between {low:.2%} and {high:.2%}",
    )


def _factorise(column: pd.Series) -> _Column:
    numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    # Sorted uniques for numbers: their order is the feature's order when judging leakage.
    codes, uniques = pd.factorize(column, sort=numeric, use_na_sentinel=True)
    return _Column(codes.astype(np.int32), np.asarray(uniques), numeric)


def _summary(
    name: str, worst: tuple[str, float] | None, bound: str, severity: Severity
) -> list[Check]:
    """A passing per-column check is one line naming the worst column."""
    observed = f"at most {worst[1]:.2%} ({worst[0]})" if worst else "no columns"
    return [_check(name, None, True, observed, bound, severity)]


def _null_shares(frame: pd.DataFrame, names: Sequence[str], bounds: AuditBounds) -> list[Check]:
    shares = {name: float(frame[name].isna().mean()) for name in names}
    bound = f"<= {bounds.max_null_share:.2%} per column"
    failed = [
        _check("null share", name, False, f"{share:.2%} null", bound)
        for name, share in shares.items()
        if share > bounds.max_null_share
    ]
    worst = max(shares.items(), key=lambda item: item[1], default=None)
    return failed or _summary("null share per column", worst, bound, Severity.CRITICAL)


def _identifiers_and_text(
    frame: pd.DataFrame, data: DataSpec, columns: dict[str, _Column], rows: int
) -> list[Check]:
    """Features a model cannot use as declared: text not declared categorical (all named at
    once, not one per failed run), an identifier (unique per row) declared categorical;
    and, as warnings, integers unique per row and text with very many distinct values."""
    checks = []
    categorical = set(data.categorical)
    declare = "numbers, or declared in data.categorical, data.exclude or data.row_key"
    unique_bound = "a feature repeats values: make it data.row_key or add it to data.exclude"
    for name, column in columns.items():
        distinct, complete = len(column.uniques), bool((column.codes >= 0).all())
        if not column.numeric and name not in categorical:
            shown = ", ".join(repr(str(v)) for v in column.uniques[:3])
            checks.append(
                _check("text column not declared", name, False, f"text values, e.g. {shown}",
                       declare)
            )  # fmt: skip
            continue
        unique = rows > 1 and complete and distinct == rows
        if unique and name in categorical:
            checks.append(
                _check("identifier declared as a feature", name, False,
                       f"{distinct} distinct values in {rows} rows: unique per row", unique_bound)
            )  # fmt: skip
        elif unique and pd.api.types.is_integer_dtype(frame[name]):
            checks.append(
                _check("unique per row", name, False,
                       f"{distinct} distinct integers in {rows} rows: an identifier?",
                       unique_bound, Severity.WARNING)
            )  # fmt: skip
        elif not column.numeric and distinct >= HIGH_CARDINALITY:
            checks.append(
                _check("text with very many values", name, False,
                       f"{distinct} distinct strings", f"< {HIGH_CARDINALITY}: a category this "
                       "wide is free text or an identifier", Severity.WARNING)
            )  # fmt: skip
    return checks


def _near_constant(columns: dict[str, _Column], rows: int, bounds: AuditBounds) -> list[Check]:
    shares = {}
    for name, column in columns.items():
        present = column.codes[column.codes >= 0]
        shares[name] = float(np.bincount(present).max()) / rows if present.size else 1.0
    bound = f"< {bounds.near_constant_share:.2%} of rows with one value"
    failed = [
        _check("near-constant column", name, False, f"one value in {share:.2%} of rows", bound,
               Severity.WARNING)
        for name, share in shares.items()
        if share >= bounds.near_constant_share
    ]  # fmt: skip
    worst = max(shares.items(), key=lambda item: item[1], default=None)
    return failed or _summary("top value share per feature", worst, bound, Severity.WARNING)


def _row_hashes(columns: Sequence[_Column], rows: int) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per row of its features' codes (equal values, equal codes).

    Hashing the int32 codes rather than the values: pandas hashes a string column through
    one Python object per row, a transient several times the column's size."""
    hashed = np.zeros(rows, dtype=np.uint64)
    for column in columns:
        hashed *= _HASH_MULTIPLIER  # wraps modulo 2**64, as intended
        hashed ^= pd.util.hash_array(column.codes)
    return hashed


def _duplicates_and_conflicts(
    columns: dict[str, _Column], rows: int, labels: Labels | None, bounds: AuditBounds
) -> list[Check]:
    """Duplicated rows (features and label, not the row key) and, among rows with identical
    features, the share whose group carries both labels. One 64-bit hash per row."""
    if not columns:
        return []
    hashed = _row_hashes(list(columns.values()), rows)
    # One sort serves both checks (numpy's hash-based unique is slower on a million keys):
    # rows with equal features form a group; with a binary label a group holds one or two
    # distinct rows, so duplicates are the rows beyond the distinct (features, label) pairs.
    # Each row-sized array is freed once its successor exists (at 4M rows each is 32 MB).
    order = np.argsort(hashed, kind="stable")
    sorted_hashes = hashed[order]
    sorted_labels = None if labels is None else labels[order]
    del hashed, order
    starts = np.flatnonzero(np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]])
    del sorted_hashes
    sizes = np.diff(np.r_[starts, rows])
    mixed = np.zeros(len(starts), dtype=bool)
    if sorted_labels is not None:
        lowest = np.minimum.reduceat(sorted_labels, starts)
        mixed = lowest != np.maximum.reduceat(sorted_labels, starts)
    duplicated = rows - len(starts) - int(mixed.sum())
    share = duplicated / rows if rows else 0.0
    checks = [
        _check(
            "duplicated rows",
            None,
            share <= bounds.max_duplicate_share,
            f"{duplicated} of {rows} rows ({share:.2%}) repeat an earlier row",
            f"<= {bounds.max_duplicate_share:.2%}",
        )
    ]
    if labels is None:
        return checks
    conflicting = int(sizes[mixed].sum())
    share = conflicting / rows if rows else 0.0
    checks.append(
        _check(
            "conflicting labels (identical features, different label)",
            None,
            share <= bounds.max_conflicting_share,
            f"{conflicting} rows in {int(mixed.sum())} groups ({share:.2%})",
            f"<= {bounds.max_conflicting_share:.2%}",
        )
    )
    return checks


def single_feature_auc(column: _Column, labels: Labels) -> float | None:
    """How well this feature alone separates the classes: the ROC AUC of its values (numbers,
    either direction) or of its categories' label rates; None when it cannot be judged."""
    present = column.codes >= 0
    codes, y = column.codes[present], labels[present]
    if codes.size == 0 or y.min() == y.max():
        return None
    size = len(column.uniques)
    positives = np.bincount(codes, weights=y, minlength=size)
    totals = np.bincount(codes, minlength=size).astype(np.float64)
    if not column.numeric:
        rare = totals < RARE_CATEGORY_ROWS
        if rare.any():
            positives = np.r_[positives[~rare], positives[rare].sum()]
            totals = np.r_[totals[~rare], totals[rare].sum()]
        order = np.argsort(positives / np.maximum(totals, 1), kind="stable")
        positives, totals = positives[order], totals[order]
    negatives = totals - positives
    below = np.cumsum(negatives) - negatives
    auc = float((positives * below + 0.5 * positives * negatives).sum())
    auc /= float(positives.sum() * negatives.sum())
    return max(auc, 1.0 - auc)


def feature_auc(column: pd.Series, labels: Labels) -> float | None:
    """`single_feature_auc` of one column as read_table returns it (0/1 labels)."""
    return single_feature_auc(_factorise(column), labels)


def _leakage(columns: dict[str, _Column], labels: Labels, bounds: AuditBounds) -> list[Check]:
    scores = {
        name: auc
        for name, column in columns.items()
        if (auc := single_feature_auc(column, labels)) is not None
    }
    bound = f"single-feature AUC < {bounds.max_single_feature_auc:.3f}"
    failed = []
    for name, auc in scores.items():
        if auc >= bounds.max_single_feature_auc:
            what = "reproduces the label" if auc >= 1.0 else "predicts the label almost alone"
            failed.append(_check("label leakage", name, False, f"AUC {auc:.4f}: {what}", bound))
    if failed:
        return failed
    worst = max(scores.items(), key=lambda item: item[1], default=None)
    observed = f"at most AUC {worst[1]:.4f} ({worst[0]})" if worst else "no feature judged"
    return [_check("label leakage (single-feature AUC)", None, True, observed, bound)]


# --- against the reference profile ---------------------------------------------------------


def reference_checks(
    frame: pd.DataFrame,
    data: DataSpec,
    bounds: AuditBounds,
    reference: Reference,
    columns: dict[str, _Column],
    labels: Labels | None,
) -> list[Check]:
    """Schema, unseen categories, null growth, label rate and slice shifts vs the reference."""
    overall = reference.profile.overall
    checks = _schema(frame, data, overall, columns)
    checks += _unseen_and_nulls(frame, overall, columns, bounds)
    if labels is not None and overall.label_rate is not None:
        checks += _label_shifts(frame, reference.profile, labels, bounds)
    return checks


def _schema(
    frame: pd.DataFrame, data: DataSpec, overall: GroupProfile, columns: dict[str, _Column]
) -> list[Check]:
    """This data's features against the stable model's, by name: a feature gone or now of
    another kind is critical (the model cannot score without it, and clients of stable would
    break), a new column a warning (the new model takes it, so clients must send it). A gone
    feature whose distribution reappears under a new name is reported as a rename."""
    kinds = {name: _kind(frame, data, name) for name in columns}
    reference = {
        name: "numeric" if isinstance(p, NumericProfile) else "categorical"
        for name, p in overall.features.items()
    }
    removed = [n for n in reference if n not in kinds]
    added = [n for n in kinds if n not in reference]
    renamed = _renames(frame, overall, removed, added, kinds, reference)
    bound = "the stable model's features, by name and kind"
    checks = []
    for old, (new, distance) in renamed.items():
        checks.append(
            _check("feature renamed", old, False,
                   f"gone; new column {new!r} has its distribution (PSI {distance:.3f})", bound,
                   source=Source.REFERENCE)
        )  # fmt: skip
    for name in removed:
        if name not in renamed:
            where = "excluded or the row key now" if name in frame.columns else "not in the data"
            checks.append(
                _check("feature removed", name, False, where, bound, source=Source.REFERENCE)
            )
    for name, kind in kinds.items():
        if name in reference and kind != reference[name]:
            checks.append(
                _check("feature type changed", name, False,
                       f"{kind} now, {reference[name]} in the stable model", bound,
                       source=Source.REFERENCE)
            )  # fmt: skip
    taken = {new for new, _ in renamed.values()}
    for name in added:
        if name not in taken:
            checks.append(
                _check("new column", name, False,
                       "not a feature of the stable model: the new model takes it, so its "
                       "clients must send it", bound, Severity.WARNING, Source.REFERENCE)
            )  # fmt: skip
    if not checks:
        observed = f"all {len(reference)} features of the stable model, same kinds, none new"
        checks.append(
            _check("schema matches the stable model", None, True, observed, bound,
                   source=Source.REFERENCE)
        )  # fmt: skip
    return checks


RENAME_PSI = 0.1
"""A new column whose PSI against a gone feature's reference histogram is below this is that
feature under a new name (PSI < 0.1 is the usual 'no shift')."""


def _kind(frame: pd.DataFrame, data: DataSpec, name: str) -> str:
    if name in data.categorical:
        return "categorical"
    return "numeric" if pd.api.types.is_numeric_dtype(frame[name]) else "text"


def _renames(
    frame: pd.DataFrame,
    overall: GroupProfile,
    removed: Sequence[str],
    added: Sequence[str],
    kinds: dict[str, str],
    reference: dict[str, str],
) -> dict[str, tuple[str, float]]:
    """Gone feature -> (new column, PSI) for each gone feature a new column matches."""
    found: dict[str, tuple[str, float]] = {}
    for old in removed:
        candidates = []
        for new in added:
            if kinds[new] != reference[old] or new in {n for n, _ in found.values()}:
                continue
            distance = _psi_against(frame[new], overall.features[old])
            if distance < RENAME_PSI:
                candidates.append((distance, new))
        if candidates:
            distance, new = min(candidates)
            found[old] = (new, distance)
    return found


def _psi_against(column: pd.Series, profile: NumericProfile | CategoricalProfile) -> float:
    if isinstance(profile, NumericProfile):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        counts, missing = bin_counts(values, profile.edges)
        reference = np.array([*profile.counts, profile.missing], dtype=np.int64)
        return psi(reference, np.append(counts, missing))
    names = list(profile.counts)
    present = column.dropna().astype(str)
    tally = present.value_counts()
    known = [int(tally.get(name, 0)) for name in names]
    current = [*known, len(present) - sum(known), int(column.isna().sum())]
    expected = [*profile.counts.values(), profile.unknown, profile.missing]
    return psi(np.array(expected, dtype=np.int64), np.array(current, dtype=np.int64))


def _unseen_and_nulls(
    frame: pd.DataFrame, overall: GroupProfile, columns: dict[str, _Column], bounds: AuditBounds
) -> list[Check]:
    rows = len(frame)
    checks = []
    unseen_bound = f"<= {bounds.max_unseen_share:.2%} of rows"
    for name, feature in overall.features.items():
        column = columns.get(name)
        if column is None or name not in frame.columns:
            continue
        if isinstance(feature, CategoricalProfile) and not column.numeric:
            known = np.isin(column.uniques.astype(str), list(feature.counts))
            new = ~known[column.codes[column.codes >= 0]]
            share = float(new.sum()) / rows
            if share > bounds.max_unseen_share:
                values = [str(v) for v in column.uniques[~known][:5]]
                checks.append(
                    _check("unseen categories", name, False,
                           f"{share:.2%} of rows, e.g. {values}", unseen_bound,
                           source=Source.REFERENCE)
                )  # fmt: skip
        was = feature.missing / overall.rows if overall.rows else 0.0
        now = float(frame[name].isna().mean())
        if now - was > bounds.max_null_increase:
            checks.append(
                _check("null share grew", name, False, f"{now:.2%} null, reference {was:.2%}",
                       f"at most {bounds.max_null_increase:.2%} above the reference",
                       Severity.WARNING, Source.REFERENCE)
            )  # fmt: skip
    if not checks:
        checks.append(
            _check("unseen categories and null growth", None, True, "within bounds",
                   f"unseen {unseen_bound}; nulls at most {bounds.max_null_increase:.2%} up",
                   source=Source.REFERENCE)
        )  # fmt: skip
    return checks


def _label_shifts(
    frame: pd.DataFrame, profile: ReferenceProfile, labels: Labels, bounds: AuditBounds
) -> list[Check]:
    """The overall label-rate shift (a warning: the world changes), and per slice the shift
    beyond the typical one (critical: labels changed in one region only look like poison)."""
    reference_rate = float(profile.overall.label_rate or 0.0)
    rate = float(labels.mean())
    overall_shift = rate - reference_rate
    checks = [
        _check(
            "label rate vs reference",
            None,
            abs(overall_shift) <= bounds.max_label_rate_shift,
            f"{rate:.2%} positive, reference {reference_rate:.2%}",
            f"within {bounds.max_label_rate_shift:.2%} of the reference",
            Severity.WARNING,
            Source.REFERENCE,
        )
    ]
    column = profile.slice_column
    if column is None or column not in frame.columns:
        return checks
    values = frame[column].astype("string").fillna("").to_numpy(dtype=object)
    judged: dict[str, tuple[int, float, float]] = {}  # value -> rows, rate, reference rate
    for value, group in profile.slices.items():
        members = values == value
        count = int(members.sum())
        if count >= bounds.min_slice_rows and group.label_rate is not None:
            judged[value] = (count, float(labels[members].mean()), group.label_rate)
    if not judged:
        return checks
    # The typical shift is the median over slices: a poisoned slice moves the overall rate
    # with it, but not the median, so the healthy slices are not blamed in its place.
    typical = float(np.median([rate - was for _, rate, was in judged.values()]))
    bound = (
        f"within {bounds.max_slice_shift:.2%} of the typical slice shift ({typical:+.2%}), "
        f"slices of >= {bounds.min_slice_rows} rows"
    )
    failed = []
    for value, (count, rate, was) in judged.items():
        beyond = rate - was - typical
        if abs(beyond) > bounds.max_slice_shift:
            failed.append(
                _check(
                    f"label-rate shift in slice {column}={value}",
                    column,
                    False,
                    f"{rate:.2%} positive vs reference {was:.2%} in {count} rows "
                    f"({beyond:+.2%} beyond the typical shift)",
                    bound,
                    source=Source.REFERENCE,
                )
            )
    if failed:
        return checks + failed
    value, (_, rate, was) = max(judged.items(), key=lambda i: abs(i[1][1] - i[1][2] - typical))
    observed = f"largest {rate - was - typical:+.2%} beyond the typical shift ({value})"
    checks.append(
        _check("slice label-rate shifts", column, True, observed, bound, source=Source.REFERENCE)
    )
    return checks
