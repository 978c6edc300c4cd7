"""The feature schema and encoding every model step shares (steps/data/features.py)."""

import numpy as np

from steps.core.store import ArtifactStore
from steps.data.dataset import read_manifest
from steps.data.features import (
    encode,
    schema_from_manifest,
)
from tests.support.datasets import churn_frame, write_dataset


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
