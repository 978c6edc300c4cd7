"""The model's inputs: which columns, in which order, and how each becomes a number.

Training, quantization, evaluation and deployment all encode rows with the same
FeatureSchema, built once from the dataset manifest and shipped in the model bundle as
`feature-schema.json`, so a category gets the same code wherever a row is scored.
The model server reads that JSON itself (serving/ does not import steps/): its format
is `{"features": [{"name": .., "kind": "numeric"|"categorical", "categories": [..]}, ..]}`,
plus `categorical`, how the model splits on the category codes (steps.core.names.CategoricalSplits).
"""

from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from steps.core.errors import BadInput
from steps.core.names import CategoricalSplits
from steps.data.dataset import DatasetManifest, FeatureKind

# XGBoost refuses feature names holding these characters; better to say so at the schema.
FORBIDDEN_IN_NAMES = ("[", "]", "<")


class Feature(BaseModel):
    """One model input. A categorical feature is encoded as its index in `categories`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FeatureKind
    categories: list[str] = []

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.name or any(c in self.name for c in FORBIDDEN_IN_NAMES):
            raise ValueError(
                f"feature name {self.name!r} must be non-empty without any of "
                f"{' '.join(FORBIDDEN_IN_NAMES)}"
            )
        if self.kind is FeatureKind.NUMERIC and self.categories:
            raise ValueError(f"numeric feature {self.name!r} cannot list categories")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categorical feature {self.name!r} lists a category twice")
        return self


class FeatureSchema(BaseModel):
    """The model's features in training order (the columns of the encoded matrix)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[Feature]
    categorical: CategoricalSplits = CategoricalSplits.CODES

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.features:
            raise ValueError("a model needs at least one feature")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"feature names repeat: {self.names}")
        return self

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise BadInput(f"no feature named {name!r}; features: {', '.join(self.names)}")


def schema_from_manifest(
    manifest: DatasetManifest, categorical: CategoricalSplits = CategoricalSplits.CODES
) -> FeatureSchema:
    """The schema for the dataset's features, in manifest order."""
    try:
        return FeatureSchema(
            features=[
                Feature(name=feature.name, kind=feature.kind, categories=feature.categories or [])
                for feature in manifest.features
            ],
            categorical=categorical,
        )
    except ValidationError as error:
        reason = " ".join(str(error).split())
        raise BadInput(
            f"dataset {manifest.digest}: features unusable by a model: {reason}"
        ) from None


def encode(frame: pd.DataFrame, schema: FeatureSchema) -> npt.NDArray[np.float32]:
    """The float32 matrix the model takes: one column per feature, in schema order.

    Numeric values pass through; a categorical value becomes its index in the category
    list. Missing values and categories the schema does not know become NaN, which XGBoost
    and the ONNX tree ensemble both route down each split's default branch.
    """
    absent = [name for name in schema.names if name not in frame.columns]
    if absent:
        raise BadInput(
            f"data lacks feature column(s) {', '.join(absent)}; "
            f"it has {', '.join(map(str, frame.columns))}"
        )
    matrix = np.empty((len(frame), len(schema.features)), dtype=np.float32)
    for index, feature in enumerate(schema.features):
        column = frame[feature.name]
        if feature.kind is FeatureKind.CATEGORICAL:
            kind = pd.api.types.infer_dtype(column, skipna=True)
            if kind not in ("string", "empty") and not column.isna().all():
                raise BadInput(
                    f"column {feature.name!r} is categorical but holds {kind} values; "
                    "categories are matched as strings"
                )
            codes = category_codes(column, feature)
            matrix[:, index] = np.where(codes < 0, np.nan, codes)
        else:
            if not pd.api.types.is_numeric_dtype(column):
                raise BadInput(
                    f"column {feature.name!r} is numeric but holds {column.dtype} values"
                )
            matrix[:, index] = column.to_numpy(dtype=np.float32, na_value=np.nan)
    return matrix


def categorical_frame(matrix: npt.NDArray[np.float32], schema: FeatureSchema) -> pd.DataFrame:
    """`encode`'s matrix with each categorical column as pandas `category` dtype over the
    schema's categories: what XGBoost's native categorical splits train on. The codes stay
    the schema's, so the model scores the plain encoded matrix (ONNX, the server) the same."""
    columns: dict[str, npt.ArrayLike] = {}
    for index, feature in enumerate(schema.features):
        values = matrix[:, index]
        if feature.kind is FeatureKind.CATEGORICAL:
            codes = np.where(np.isnan(values), -1, values).astype(np.int32)
            columns[feature.name] = pd.Categorical.from_codes(
                codes, categories=pd.Index(feature.categories, dtype=object)
            )
        else:
            columns[feature.name] = values
    return pd.DataFrame(columns)


def category_codes(column: pd.Series, feature: Feature) -> npt.NDArray[np.intp]:
    """Each value's index in the feature's categories; -1 for missing or unknown."""
    return pd.Index(feature.categories, dtype=object).get_indexer(pd.Index(column, dtype=object))


def save_schema(schema: FeatureSchema, path: Path) -> None:
    path.write_text(schema.model_dump_json(indent=2) + "\n")


def load_schema(path: Path) -> FeatureSchema:
    """The schema of a model bundle; a missing or malformed file is bad input, named."""
    try:
        return FeatureSchema.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise BadInput(f"feature schema {path} does not exist") from None
    except ValidationError as error:
        reason = " ".join(str(error).split())
        raise BadInput(f"feature schema {path} is not valid: {reason}") from None
