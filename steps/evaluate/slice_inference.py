"""Default slices for data nobody has described: each categorical feature with few values,
and quartile bins of the numeric features that predict the label best on their own.

The model does not exist yet when `mlpipe init` writes the slices file, so "most important"
is measured before training: the feature's single-feature AUC (the audit's leakage measure,
steps/audit/checks.py), which ranks features by how much of the label each carries alone.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from steps.audit.checks import feature_auc
from steps.core.specs import DataSpec, SliceAxis, SliceGroup

MAX_CATEGORIES = 12
"""A categorical feature with more values makes slices too small to say anything."""
MAX_CATEGORICAL_GROUPS = 4
NUMERIC_GROUPS = 2
QUARTILES = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class InferredSlice:
    group: SliceGroup
    reason: str


def infer_slices(
    frame: pd.DataFrame, data: DataSpec, labels: npt.NDArray[np.int8]
) -> list[InferredSlice]:
    """Slice groups for `frame` (as read_table returns it), most predictive first."""
    not_features = {data.label, *data.exclude, *([data.row_key] if data.row_key else [])}
    features = [str(c) for c in frame.columns if c not in not_features]
    categorical = set(data.categorical)
    scored = {name: feature_auc(frame[name], labels) or 0.5 for name in features}
    ranked = sorted(features, key=lambda name: -scored[name])
    slices: list[InferredSlice] = []
    few = [n for n in ranked if n in categorical and frame[n].nunique() <= MAX_CATEGORIES]
    for name in few[:MAX_CATEGORICAL_GROUPS]:
        slices.append(
            InferredSlice(
                SliceGroup(by=[SliceAxis(column=name)]),
                f"categorical, {frame[name].nunique()} values; single-feature AUC "
                f"{scored[name]:.3f}",
            )
        )
    numeric = [n for n in ranked if n not in categorical]
    for rank, name in enumerate(numeric[:NUMERIC_GROUPS], start=1):
        edges = quartile_edges(frame[name].to_numpy(dtype=np.float64, na_value=np.nan))
        if edges:
            slices.append(
                InferredSlice(
                    SliceGroup(by=[SliceAxis(column=name, bins=edges)]),
                    f"numeric, quartiles; single-feature AUC {scored[name]:.3f}, "
                    f"#{rank} among numeric features",
                )
            )
    return slices


def quartile_edges(values: npt.NDArray[np.float64]) -> list[float]:
    """The quartiles, rounded to three significant digits, duplicates dropped."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return []
    edges = [float(f"{q:.3g}") for q in np.quantile(present, QUARTILES)]
    return sorted(set(edges))
