"""Slices of the test split, as config/slices.yaml defines them (EvaluateSpec.slices).

A slice group cuts on one column (each category, or numeric bins) or on the cross of two;
rows whose value is missing (or a category the model never saw, which it treats the same)
form their own `missing` slice, since a model can fail exactly there. A slice is the row
indices it holds. Rows are coded batch by batch (`group_codes`, then `joined`), so the split
never needs to be in memory whole.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.core.errors import BadInput
from steps.core.specs import SliceAxis, SliceGroup
from steps.data.dataset import FeatureKind
from steps.data.features import FeatureSchema, category_codes

MISSING = "missing"


@dataclass(frozen=True)
class Slice:
    group: str
    """The columns it is cut on, e.g. `region` or `region x plan`."""
    name: str
    """e.g. `region=east`, `6<=tenure_months<24`, `region=east & plan=pro`."""
    rows: npt.NDArray[np.intp]


def default_groups(slice_column: str | None) -> list[SliceGroup]:
    """Without configured slices, the dataset's slice column (if any) is the one group."""
    return [] if slice_column is None else [SliceGroup(by=[SliceAxis(column=slice_column)])]


@dataclass(frozen=True)
class GroupCodes:
    """One slice group on some rows: each row's slice, as an index into `labels` (in the
    smallest unsigned integer that holds it: a byte a row for most groups)."""

    group: str
    labels: list[str]
    codes: npt.NDArray[np.unsignedinteger[Any]]


def group_codes(
    frame: pd.DataFrame, schema: FeatureSchema, groups: list[SliceGroup]
) -> list[GroupCodes]:
    """Each group's slice codes for the rows of `frame` (one batch of the split or all of
    it), in configuration order; a group the data cannot have is BadInput, named."""
    coded: list[GroupCodes] = []
    for index, group in enumerate(groups):
        axes = [
            _axis_codes(frame, schema, axis, f"slices[{index}].by[{number}]")
            for number, axis in enumerate(group.by)
        ]
        codes, labels = axes[0]
        if len(axes) == 2:
            other_codes, other_labels = axes[1]
            codes = codes * len(other_labels) + other_codes
            labels = [f"{a} & {b}" for a in labels for b in other_labels]
        name = " x ".join(axis.column for axis in group.by)
        coded.append(GroupCodes(name, labels, codes.astype(np.min_scalar_type(len(labels)))))
    return coded


def joined(batches: list[list[GroupCodes]]) -> list[GroupCodes]:
    """The groups' codes of consecutive batches of rows, as one."""
    return [
        GroupCodes(first.group, first.labels, np.concatenate([b[i].codes for b in batches]))
        for i, first in enumerate(batches[0])
    ]


def slice_count(groups: list[GroupCodes]) -> int:
    """How many non-empty slices `slices_of` yields."""
    return sum(int(np.count_nonzero(np.bincount(g.codes, minlength=len(g.labels)))) for g in groups)


def slices_of(groups: list[GroupCodes]) -> Iterator[Slice]:
    """Every non-empty slice of every group, in configuration order, one at a time: only one
    group's row indices exist at once."""
    for coded in groups:
        order = np.argsort(coded.codes, kind="stable")
        bounds = np.searchsorted(coded.codes[order], np.arange(len(coded.labels) + 1))
        for code, label in enumerate(coded.labels):
            rows = np.sort(order[bounds[code] : bounds[code + 1]])
            if len(rows):
                yield Slice(group=coded.group, name=label, rows=rows)


def _axis_codes(
    frame: pd.DataFrame, schema: FeatureSchema, axis: SliceAxis, key: str
) -> tuple[npt.NDArray[np.intp], list[str]]:
    """Each row's slice code on one axis (the last code is `missing`) and the code labels."""
    if axis.column not in schema.names:
        raise BadInput(
            f"evaluate spec {key}.column: {axis.column!r} is not a model feature; "
            f"features: {', '.join(schema.names)}"
        )
    feature = schema.feature(axis.column)
    column = frame[axis.column]
    if feature.kind is FeatureKind.CATEGORICAL:
        if axis.bins is not None:
            raise BadInput(f"evaluate spec {key}.bins: {axis.column!r} is categorical, not binned")
        codes = category_codes(column, feature)
        labels = [f"{axis.column}={category}" for category in feature.categories]
    else:
        if axis.bins is None:
            raise BadInput(f"evaluate spec {key}.bins: numeric column {axis.column!r} needs bins")
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        codes = np.digitize(values, axis.bins).astype(np.intp)
        codes[np.isnan(values)] = -1
        edges = [f"{edge:g}" for edge in axis.bins]
        labels = [
            f"{axis.column}<{edges[0]}",
            *(f"{low}<={axis.column}<{high}" for low, high in pairwise(edges)),
            f"{axis.column}>={edges[-1]}",
        ]
    codes = np.where(codes < 0, len(labels), codes)
    return codes, [*labels, f"{axis.column}={MISSING}"]
