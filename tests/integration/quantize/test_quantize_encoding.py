"""The opset-5 TreeEnsemble encoding against XGBoost itself: numeric and categorical splits,
missing values, one-leaf trees, reduced precision, and boosters it must refuse."""

from pathlib import Path

import xgboost

from steps.core.names import Encoding, ModelFile
from steps.core.specs import QuantizeSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import FeatureKind, Split, load_split, read_manifest
from steps.data.features import encode, save_schema, schema_from_manifest
from steps.quantize.encoding import has_categorical_splits
from steps.quantize.step import quantize
from tests.support.datasets import churn_frame, write_dataset


def test_the_step_encodes_a_categorical_model_without_the_baseline(
    store: ArtifactStore, tmp_path: Path
) -> None:
    """With native categorical splits, opset-5 float32 is the reference and the gate."""
    uri = write_dataset(store, churn_frame(2000, seed=8), shards=1)
    schema = schema_from_manifest(read_manifest(store, uri))
    train = load_split(store, uri, Split.TRAIN)
    types = ["c" if f.kind is FeatureKind.CATEGORICAL else "q" for f in schema.features]
    data = xgboost.DMatrix(encode(train, schema), label=train["churned"], feature_types=types,
                           feature_names=schema.names, enable_categorical=True)  # fmt: skip
    params = {"objective": "binary:logistic", "max_depth": 3, "max_cat_to_onehot": 1}
    booster = xgboost.train(params, data, num_boost_round=15)
    assert has_categorical_splits(booster)
    bundle = tmp_path / "model"
    bundle.mkdir()
    (bundle / ModelFile.BOOSTER).write_bytes(bytes(booster.save_raw("ubj")))
    save_schema(schema, bundle / ModelFile.FEATURE_SCHEMA)

    _, report = quantize(store, bundle, uri, QuantizeSpec(max_slowdown=10))
    assert report.reference is Encoding.OPSET5 and report.parity.encoding is Encoding.OPSET5
    assert report.parity.max_abs_diff <= 1e-5
    assert Encoding.BASELINE not in [c.measurement.encoding for c in report.candidates]
    assert report.encoding is not Encoding.BASELINE
    assert "categorical splits" in report.notes[0]
