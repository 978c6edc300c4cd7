"""Comparing a window of data to the reference profile, feature by feature.

The profile holds counts, not rows (steps/data/profile.py), so every statistic here works on
counts over the profile's own buckets: the window is binned exactly as the training data
was (the profile's `binning` rule) and the two count vectors are compared.

- PSI over all buckets, missing (and, for categories, unseen) included; empty buckets are
  floored at PSI_FLOOR, the usual convention, so a bucket that appears from nothing counts
  heavily instead of infinitely.
- Numeric: the two-sample Kolmogorov-Smirnov distance at the profile's cut points, which is
  the exact KS distance of the binned data and a lower bound of the raw one (the test is
  conservative), with the asymptotic p-value for the effective size n*m/(n+m).
- Categorical: chi-squared test of homogeneity on the 2 x buckets table, Cramér's V as its
  effect size (large windows make any difference significant; V says whether it matters).

scipy.stats is imported by the tests that use it, not at the top: it takes ~0.4 s to import,
and evaluate, model card, deploy and the audit import this module for PSI alone.
"""

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.core.errors import BadInput
from steps.core.specs import DriftSpec
from steps.data.dataset import FeatureKind
from steps.data.features import Feature, FeatureSchema, category_codes
from steps.data.profile import CategoricalProfile, GroupProfile, NumericProfile
from steps.drift.result import FeatureDrift, Histogram

PSI_FLOOR = 1e-4
MISSING, UNSEEN = "missing", "unseen"
UNSEEN_SHOWN = 5
"""Unseen categories named in a result, most frequent first."""

Counts = npt.NDArray[np.int64]


def shares(counts: Counts) -> npt.NDArray[np.float64]:
    """Each bucket's share of its row (the last axis); all zero for an empty row."""
    total = counts.sum(axis=-1, keepdims=True)
    result: npt.NDArray[np.float64] = np.divide(
        counts, total, out=np.zeros(counts.shape), where=total > 0
    )
    return result


def psi(reference: Counts, current: Counts) -> float:
    """Population stability index of `current` against `reference` (same buckets)."""
    return float(psi_rows(reference, current))


def psi_rows(reference: Counts, current: Counts) -> npt.NDArray[np.float64]:
    """PSI along the last axis, row against row (broadcast): many samples in one pass."""
    expected = np.maximum(shares(reference), PSI_FLOOR)
    actual = np.maximum(shares(current), PSI_FLOOR)
    result: npt.NDArray[np.float64] = np.sum((actual - expected) * np.log(actual / expected), -1)
    return result


def binned_ks(reference: Counts, current: Counts) -> float:
    """Largest gap between the two cumulative distributions at the bucket boundaries."""
    if not reference.sum() or not current.sum():
        return 0.0
    gap = np.cumsum(shares(reference)) - np.cumsum(shares(current))
    return float(np.max(np.abs(gap)))


def ks_p_value(distance: float, n: int, m: int) -> float:
    """Asymptotic two-sample KS p-value (scipy's `ks_2samp(method="asymp")` formula)."""
    if not n or not m:
        return 1.0
    from scipy import stats  # imported here: see the module docstring

    effective = max(1, round(n * m / (n + m)))
    return float(stats.kstwo.sf(distance, effective))


def chi2_homogeneity(reference: Counts, current: Counts) -> tuple[float, float, float]:
    """(chi2, p-value, Cramér's V) for "both count vectors come from one distribution"."""
    table = np.stack([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or not reference.sum() or not current.sum():
        return 0.0, 1.0, 0.0
    from scipy import stats  # imported here: see the module docstring

    result = stats.chi2_contingency(table, correction=False)
    chi2, p_value = float(result.statistic), float(result.pvalue)
    # Two rows: min(rows, columns) - 1 == 1, so V = sqrt(chi2 / N).
    return chi2, p_value, math.sqrt(chi2 / table.sum())


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC from its class sizes."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def drop_p_value(drop: float, standard_error: float) -> float:
    """One-sided p-value of a drop given its standard error (normal approximation)."""
    if standard_error <= 0:
        return 0.0 if drop > 0 else 1.0
    from scipy import stats  # imported here: see the module docstring

    return float(stats.norm.sf(drop / standard_error))


def feature_drift(
    frame: pd.DataFrame, schema: FeatureSchema, profile: GroupProfile, spec: DriftSpec
) -> list[FeatureDrift]:
    """Every feature of the schema in `frame` against `profile`, most drifted first."""
    results = []
    for feature in schema.features:
        reference = profile.features.get(feature.name)
        if reference is None:
            raise BadInput(f"the reference profile has no feature {feature.name!r}")
        if isinstance(reference, NumericProfile) and feature.kind is FeatureKind.NUMERIC:
            results.append(numeric_drift(feature.name, frame[feature.name], reference, spec))
        elif isinstance(reference, CategoricalProfile) and feature.kind is FeatureKind.CATEGORICAL:
            results.append(categorical_drift(feature, frame[feature.name], reference, spec))
        else:
            raise BadInput(
                f"feature {feature.name!r} is {feature.kind} in the model's schema but "
                f"{reference.kind} in its reference profile"
            )
    return sorted(results, key=lambda drift: (not drift.drifted, -drift.psi))


def numeric_drift(
    name: str, column: pd.Series, reference: NumericProfile, spec: DriftSpec
) -> FeatureDrift:
    if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
        raise BadInput(f"column {name!r} is numeric in the model but holds {column.dtype} values")
    counts, missing = bin_counts(
        column.to_numpy(dtype=np.float64, na_value=np.nan), reference.edges
    )
    ref_counts = np.asarray(reference.counts, dtype=np.int64)
    distance = binned_ks(ref_counts, counts)
    p_value = ks_p_value(distance, int(ref_counts.sum()), int(counts.sum()))
    ref_all = np.append(ref_counts, reference.missing)
    cur_all = np.append(counts, missing)
    value = psi(ref_all, cur_all)
    reasons = _psi_reason(value, spec)
    if distance > spec.ks_statistic and p_value < spec.significance:
        reasons.append(f"KS {distance:.2f} > {spec.ks_statistic:g} (p {p_value:.1g})")
    return FeatureDrift(
        name=name,
        kind="numeric",
        psi=value,
        test="ks",
        statistic=distance,
        p_value=p_value,
        effect=distance,
        missing_reference=_share(reference.missing, ref_all),
        missing_current=_share(missing, cur_all),
        drifted=bool(reasons),
        reasons=reasons,
        histogram=Histogram(
            buckets=[*bin_labels(reference.edges), MISSING],
            reference=shares(ref_all).tolist(),
            current=shares(cur_all).tolist(),
        ),
    )


def categorical_drift(
    feature: Feature, column: pd.Series, reference: CategoricalProfile, spec: DriftSpec
) -> FeatureDrift:
    if list(reference.counts) != feature.categories:
        raise BadInput(
            f"feature {feature.name!r}: the reference profile counts categories "
            f"{list(reference.counts)}, the model's schema lists {feature.categories}"
        )
    codes = category_codes(column, feature)
    absent = column.isna().to_numpy()
    missing = int(np.count_nonzero(absent))
    unseen_rows = (codes < 0) & ~absent
    unseen = int(np.count_nonzero(unseen_rows))
    known = np.bincount(codes[codes >= 0], minlength=len(feature.categories))
    cur_all = np.append(known, [unseen, missing]).astype(np.int64)
    ref_all = np.array([*reference.counts.values(), reference.unknown, reference.missing])
    chi2, p_value, cramers_v = chi2_homogeneity(ref_all, cur_all)
    value = psi(ref_all, cur_all)
    unseen_share = _share(unseen, cur_all)
    unseen_values = (
        [str(v) for v in column[unseen_rows].value_counts().index[:UNSEEN_SHOWN]] if unseen else []
    )
    reasons = _psi_reason(value, spec)
    if cramers_v > spec.cramers_v and p_value < spec.significance:
        reasons.append(f"chi2 V {cramers_v:.2f} > {spec.cramers_v:g} (p {p_value:.1g})")
    if unseen_share > spec.unseen_share:
        shown = ", ".join(repr(v) for v in unseen_values)
        reasons.append(f"unseen {shown} in {unseen_share:.1%} of rows > {spec.unseen_share:.1%}")
    return FeatureDrift(
        name=feature.name,
        kind="categorical",
        psi=value,
        test="chi2",
        statistic=chi2,
        p_value=p_value,
        effect=cramers_v,
        missing_reference=_share(reference.missing, ref_all),
        missing_current=_share(missing, cur_all),
        unseen_share=unseen_share,
        unseen_values=unseen_values,
        drifted=bool(reasons),
        reasons=reasons,
        histogram=Histogram(
            buckets=[*feature.categories, UNSEEN, MISSING],
            reference=shares(ref_all).tolist(),
            current=shares(cur_all).tolist(),
        ),
    )


def _psi_reason(value: float, spec: DriftSpec) -> list[str]:
    return [f"PSI {value:.2f} > {spec.psi:g}"] if value > spec.psi else []


def _share(part: int, counts: Counts) -> float:
    total = int(counts.sum())
    return part / total if total else 0.0


def bin_counts(values: npt.NDArray[np.floating], edges: Sequence[float]) -> tuple[Counts, int]:
    """Values per bin under the profile's rule (bin i holds edges[i-1] <= v < edges[i]),
    and how many values are missing (NaN)."""
    missing = int(np.count_nonzero(np.isnan(values)))
    # NaN sorts last, so searchsorted puts missing values in the top bin: take them out
    # again instead of filtering the column (one pass over the data, no copy).
    bins = np.searchsorted(edges, values, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.int64)
    counts[-1] -= missing
    return counts, missing


def bin_labels(edges: Sequence[float], digits: int = 4) -> list[str]:
    """Bucket names for the bins of `bin_counts`."""
    if not edges:
        return ["all values"]
    cuts = [f"{edge:.{digits}g}" for edge in edges]
    middle = [f"{low} to {high}" for low, high in itertools.pairwise(cuts)]
    return [f"< {cuts[0]}", *middle, f">= {cuts[-1]}"]
