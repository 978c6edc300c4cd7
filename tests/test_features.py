"""The feature schema and encoding every model step shares (steps/data/features.py)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.core.errors import BadInput
from steps.core.store import ArtifactStore
from steps.data.dataset import DatasetManifest, FeatureKind, read_manifest
from steps.data.features import (
    Feature,
    FeatureSchema,
    encode,
    load_schema,
    save_schema,
    schema_from_manifest,
)
from tests.datasets import churn_frame, write_dataset

SCHEMA = FeatureSchema(
    features=[
        Feature(name="tenure", kind=FeatureKind.NUMERIC),
        Feature(name="region", kind=FeatureKind.CATEGORICAL, categories=["central", "east"]),
    ]
)


def manifest(features: list[dict[str, object]]) -> DatasetManifest:
    return DatasetManifest.model_validate(
        {
            "digest": "d" * 64,
            "shards": 1,
            "rows": {"train": 1, "valid": 1, "test": 1},
            "label": "churned",
            "features": features,
        }
    )


def test_encode_follows_schema_order_with_codes_and_nan() -> None:
    frame = pd.DataFrame(
        {
            "region": pd.Series(["east", None, "west", "central"], dtype="string"),
            "other": [9, 9, 9, 9],
            "tenure": [1.5, np.nan, 3.0, -2.0],
        }
    )
    matrix = encode(frame, SCHEMA)
    assert matrix.dtype == np.float32
    expected = np.array(
        [[1.5, 1.0], [np.nan, np.nan], [3.0, np.nan], [-2.0, 0.0]], dtype=np.float32
    )
    np.testing.assert_array_equal(matrix, expected)  # NaN == NaN for this assertion


def test_encode_accepts_object_strings_and_nullable_numbers() -> None:
    frame = pd.DataFrame(
        {
            "tenure": pd.array([4, None], dtype="Int64"),
            "region": pd.Series(["central", None], dtype=object),
        }
    )
    np.testing.assert_array_equal(
        encode(frame, SCHEMA), np.array([[4.0, 0.0], [np.nan, np.nan]], dtype=np.float32)
    )


def test_encode_names_a_missing_column() -> None:
    with pytest.raises(BadInput, match="region"):
        encode(pd.DataFrame({"tenure": [1.0]}), SCHEMA)


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("tenure", ["a", "b"], "'tenure' is numeric but holds"),
        ("region", [1, 2], "'region' is categorical but holds integer values"),
    ],
)
def test_encode_rejects_wrong_column_types(
    column: str, values: list[str] | list[int], message: str
) -> None:
    frame = pd.DataFrame({"tenure": [1.0, 2.0], "region": ["east", "east"]})
    frame[column] = values
    with pytest.raises(BadInput, match=message):
        encode(frame, SCHEMA)


def test_schema_from_manifest_keeps_order_and_categories() -> None:
    schema = schema_from_manifest(
        manifest(
            [
                {"name": "plan", "kind": "categorical", "categories": ["basic", "pro"]},
                {"name": "tenure", "kind": "numeric"},
            ]
        )
    )
    assert schema.names == ["plan", "tenure"]
    assert schema.feature("plan").categories == ["basic", "pro"]
    assert schema.feature("tenure").categories == []


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([{"name": "a[0]", "kind": "numeric"}], "must be non-empty without"),
        ([{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}], "repeat"),
        ([{"name": "r", "kind": "categorical", "categories": ["x", "x"]}], "twice"),
        ([], "at least one feature"),
    ],
)
def test_schema_from_manifest_rejects_unusable_features(
    features: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(BadInput, match=message):
        schema_from_manifest(manifest(features))


def test_schema_file_round_trips_in_the_format_serving_reads(tmp_path: Path) -> None:
    path = tmp_path / "feature-schema.json"
    save_schema(SCHEMA, path)
    assert load_schema(path) == SCHEMA
    # serving/ parses this JSON itself: the field names are a contract.
    assert json.loads(path.read_text()) == {
        "features": [
            {"name": "tenure", "kind": "numeric", "categories": []},
            {"name": "region", "kind": "categorical", "categories": ["central", "east"]},
        ],
        "categorical": "codes",
    }


def test_load_schema_rejects_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_schema(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"features": [{"name": "x", "kind": "ordinal"}]}')
    with pytest.raises(BadInput, match=r"broken.json is not valid: .*kind"):
        load_schema(broken)


def test_encoding_is_consistent_across_shards_of_a_stored_dataset(store: ArtifactStore) -> None:
    """Every worker encodes a category to the same code, because codes come from the
    manifest's global category list, not from the shard's own values."""
    frame = churn_frame(200, seed=5)
    uri = write_dataset(store, frame, shards=2)
    schema = schema_from_manifest(read_manifest(store, uri))
    region = schema.names.index("region")
    codes = encode(frame, schema)[:, region]
    expected = frame["region"].map({"central": 0, "east": 1, "north": 2, "south": 3})
    np.testing.assert_array_equal(codes, expected.to_numpy(dtype=np.float32))
