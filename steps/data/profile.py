"""The reference profile: what the training data looked like, feature by feature.

Shipped in the model bundle (`reference-profile.json`) so a drift check can later bin
live traffic the same way and compare. Overall and per value of the slice column:
row and positive counts, per numeric feature a histogram over fixed cut points, per
categorical feature a count per category.

Counting is split from assembling so distributed training can sum counts across workers:
every worker counts its shard with the same cut points into a flat array of one layout
(`ProfileLayout`), the arrays are summed, and the sum becomes the profile.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from steps.core.errors import BadInput
from steps.data.dataset import FeatureKind
from steps.data.features import FeatureSchema, category_codes

QUANTILE_BINS = 10
BINNING = (
    "numeric value v falls in bin searchsorted(edges, v, side='right'): bin 0 holds "
    "v < edges[0], bin i holds edges[i-1] <= v < edges[i], the last bin v >= edges[-1]"
)


class NumericProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["numeric"] = "numeric"
    edges: list[float]
    counts: list[int]
    missing: int


class CategoricalProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["categorical"] = "categorical"
    counts: dict[str, int]
    unknown: int
    missing: int


class GroupProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int
    positives: int
    label_rate: float | None
    features: dict[str, NumericProfile | CategoricalProfile]


class ReferenceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    binning: str = BINNING
    slice_column: str | None
    overall: GroupProfile
    slices: dict[str, GroupProfile]


@dataclass(frozen=True)
class ProfileLayout:
    """What every worker must agree on before counting: features, cut points, slices."""

    schema: FeatureSchema
    label: str
    edges: dict[str, list[float]]
    slice_column: str | None

    @property
    def slice_values(self) -> list[str]:
        if self.slice_column is None:
            return []
        return self.schema.feature(self.slice_column).categories

    def widths(self) -> list[int]:
        """Counters per feature: one per bin or category, plus unknown (categorical) and
        missing."""
        return [
            len(self.edges[feature.name]) + 2
            if feature.kind is FeatureKind.NUMERIC
            else len(feature.categories) + 2
            for feature in self.schema.features
        ]


def quantile_edges(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, list[float]]:
    """Cut points at the deciles of each numeric feature (duplicates dropped)."""
    quantiles = np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]
    edges: dict[str, list[float]] = {}
    for feature in schema.features:
        if feature.kind is FeatureKind.NUMERIC:
            values = frame[feature.name].to_numpy(dtype=np.float64, na_value=np.nan)
            present = values[~np.isnan(values)]
            cuts = np.unique(np.quantile(present, quantiles)) if present.size else np.empty(0)
            edges[feature.name] = [float(cut) for cut in cuts]
    return edges


def layout_for(
    schema: FeatureSchema, label: str, edges: dict[str, list[float]], slice_column: str | None
) -> ProfileLayout:
    if slice_column is not None and (
        slice_column not in schema.names
        or schema.feature(slice_column).kind is not FeatureKind.CATEGORICAL
    ):
        raise BadInput(f"slice column {slice_column!r} must be a categorical feature")
    return ProfileLayout(schema, label, edges, slice_column)


def count(frame: pd.DataFrame, layout: ProfileLayout) -> npt.NDArray[np.int64]:
    """Counts of one part of the data: shape (1 + slices, 2 + sum of widths); row 0 is
    overall, then one row per slice value; columns are rows, positives, then features."""
    groups = [np.ones(len(frame), dtype=bool)]
    if layout.slice_column is not None:
        column = frame[layout.slice_column]
        groups += [(column == value).to_numpy(dtype=bool) for value in layout.slice_values]
    labels = frame[layout.label].to_numpy(dtype=np.int64)
    features = [_feature_bins(frame, layout, name) for name in layout.schema.names]
    counts = np.zeros((len(groups), 2 + sum(layout.widths())), dtype=np.int64)
    for row, members in enumerate(groups):
        parts = [np.array([members.sum(), labels[members].sum()], dtype=np.int64)]
        parts += [
            np.bincount(bins[members], minlength=width)
            for bins, width in zip(features, layout.widths(), strict=True)
        ]
        counts[row] = np.concatenate(parts)
    return counts


def _feature_bins(frame: pd.DataFrame, layout: ProfileLayout, name: str) -> npt.NDArray[np.int64]:
    """The counter index of each row's value: a bin or category, then unknown, then missing."""
    feature = layout.schema.feature(name)
    column = frame[name]
    if feature.kind is FeatureKind.NUMERIC:
        edges = layout.edges[name]
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        bins = np.searchsorted(edges, values, side="right").astype(np.int64)
        return np.where(np.isnan(values), len(edges) + 1, bins)
    codes = category_codes(column, feature).astype(np.int64)
    unknown, missing = len(feature.categories), len(feature.categories) + 1
    return np.where(column.isna().to_numpy(), missing, np.where(codes < 0, unknown, codes))


def assemble(counts: npt.NDArray[np.int64], layout: ProfileLayout) -> ReferenceProfile:
    """The profile described by counts (summed over all parts of the data)."""
    groups = [_group(row, layout) for row in counts]
    return ReferenceProfile(
        slice_column=layout.slice_column,
        overall=groups[0],
        slices=dict(zip(layout.slice_values, groups[1:], strict=True)),
    )


def _group(row: npt.NDArray[np.int64], layout: ProfileLayout) -> GroupProfile:
    rows, positives = int(row[0]), int(row[1])
    features: dict[str, NumericProfile | CategoricalProfile] = {}
    start = 2
    for feature, width in zip(layout.schema.features, layout.widths(), strict=True):
        cells = [int(value) for value in row[start : start + width]]
        start += width
        if feature.kind is FeatureKind.NUMERIC:
            features[feature.name] = NumericProfile(
                edges=layout.edges[feature.name], counts=cells[:-1], missing=cells[-1]
            )
        else:
            features[feature.name] = CategoricalProfile(
                counts=dict(zip(feature.categories, cells[:-2], strict=True)),
                unknown=cells[-2],
                missing=cells[-1],
            )
    return GroupProfile(
        rows=rows,
        positives=positives,
        label_rate=positives / rows if rows else None,
        features=features,
    )


def parse_profile(data: bytes, where: str) -> ReferenceProfile:
    """A `reference-profile.json` read back (drift check, audit); malformed is BadInput."""
    try:
        return ReferenceProfile.model_validate_json(data)
    except ValidationError as error:
        reason = " ".join(str(error).split())
        raise BadInput(f"reference profile {where} is not valid: {reason}") from None
