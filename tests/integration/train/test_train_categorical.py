"""Native categorical splits (`TrainSpec.categorical: native`): string categories round-trip
into the feature schema in training order, and the model scores the same through the
schema's codes as through pandas categories."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from steps.core.names import CategoricalSplits, ModelFile, Param, model_prefix
from steps.core.store import ArtifactStore
from steps.data.dataset import FeatureKind, Split, load_split
from steps.data.features import Feature, FeatureSchema, categorical_frame, encode, load_schema
from tests.integration.train.test_train import SPEC, train_group
from tests.support.datasets import churn_frame, write_dataset

SCHEMA = FeatureSchema(
    features=[
        Feature(name="tenure", kind=FeatureKind.NUMERIC),
        Feature(name="region", kind=FeatureKind.CATEGORICAL, categories=["west", "east"]),
    ]
)


def test_categorical_frame_keeps_the_schema_codes() -> None:
    frame = pd.DataFrame(
        {
            "tenure": [1.0, np.nan, 3.0, 4.0],
            "region": pd.Series(["east", "north", None, "west"], dtype=object),
        }
    )
    matrix = encode(frame, SCHEMA)
    native = categorical_frame(matrix, SCHEMA)
    assert list(native.columns) == SCHEMA.names
    assert list(native["region"].cat.categories) == ["west", "east"]
    # Unknown and missing both become missing, as in the encoded matrix.
    assert native["region"].cat.codes.tolist() == [1, -1, -1, 0]
    np.testing.assert_array_equal(native["tenure"].to_numpy(), matrix[:, 0])
    assert SCHEMA.categorical is CategoricalSplits.CODES


def test_native_categories_round_trip_and_predict_the_same_through_the_schema(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    uri = write_dataset(store, churn_frame(2000, seed=6), shards=2)
    spec = {**SPEC, "categorical": "native"}
    workers = train_group(uri, spec, 2, {**os.environ, **s3_env}, tmp_path)
    digest = workers[0].params[Param.MODEL_DIGEST]
    assert {worker.params[Param.MODEL_DIGEST] for worker in workers} == {digest}
    bundle = tmp_path / "bundle"
    store.download_dir(model_prefix(digest), bundle)
    schema = load_schema(bundle / ModelFile.FEATURE_SCHEMA)
    booster = xgboost.Booster(model_file=str(bundle / ModelFile.BOOSTER))

    assert schema.categorical is CategoricalSplits.NATIVE
    data = churn_frame(2000, seed=6)
    for name in ("region", "plan"):
        assert schema.feature(name).categories == sorted(data[name].dropna().unique())
    kinds = {f.name: f.kind for f in schema.features}
    assert booster.feature_types == [
        "c" if kinds[name] is FeatureKind.CATEGORICAL else "float" for name in booster.feature_names
    ]
    assert any(":{" in tree for tree in booster.get_dump()), "no category-set split"

    test = load_split(store, uri, Split.TEST)
    through_schema = booster.predict(
        xgboost.DMatrix(encode(test, schema), feature_names=schema.names)
    )
    strings = test[schema.names].copy()
    for name in ("region", "plan"):
        strings[name] = strings[name].astype(pd.CategoricalDtype(schema.feature(name).categories))
    through_pandas = booster.predict(xgboost.DMatrix(strings, enable_categorical=True))
    np.testing.assert_array_equal(through_schema, through_pandas)
    assert len(np.unique(through_schema)) > 10
