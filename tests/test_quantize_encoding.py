"""The opset-5 TreeEnsemble encoding against XGBoost itself: numeric and categorical splits,
missing values, one-leaf trees, reduced precision, and boosters it must refuse."""

import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
import xgboost
from onnx import numpy_helper

from steps.core.errors import BadInput
from steps.core.names import Encoding, ModelFile
from steps.core.specs import QuantizeSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import FeatureKind, Split, load_split, read_manifest
from steps.data.features import encode, save_schema, schema_from_manifest
from steps.quantize.encoding import has_categorical_splits, to_onnx, to_tree_ensemble
from steps.quantize.session import open_session
from steps.quantize.step import quantize
from tests.datasets import churn_frame, write_dataset


def _data(rows: int, seed: int) -> npt.NDArray[np.float32]:
    """Three numeric columns and a category code column (0..11), 5% missing everywhere."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, 4)).astype(np.float32)
    matrix[:, 3] = rng.integers(0, 12, rows)
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    return matrix


def _train(categorical: bool, rounds: int = 20, **params: object) -> xgboost.Booster:
    matrix = _data(4000, seed=1)
    signal = np.nan_to_num(matrix[:, 0]) + np.isin(matrix[:, 3], [2, 5, 7, 9]) * 1.5
    labels = (signal + np.random.default_rng(2).normal(size=len(matrix)) > 0.8).astype(int)
    types = ["q", "q", "q", "c" if categorical else "q"]
    data = xgboost.DMatrix(matrix, label=labels, feature_types=types, enable_categorical=True)
    settings = {"objective": "binary:logistic", "max_depth": 4, "max_cat_to_onehot": 1,
                "nthread": 1, **params}  # fmt: skip
    return xgboost.train(settings, data, num_boost_round=rounds)


def _max_diff(model: bytes, booster: xgboost.Booster, matrix: npt.NDArray[np.float32]) -> float:
    (probabilities,) = open_session(model).run(["probabilities"], {"input": matrix})
    assert probabilities.shape == (len(matrix), 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    return float(np.abs(probabilities[:, 1] - booster.inplace_predict(matrix)).max())


def test_opset5_matches_xgboost_with_missing_values() -> None:
    booster = _train(categorical=False)
    matrix = _data(3000, seed=3)
    model = to_tree_ensemble(booster)
    assert _max_diff(model, booster, matrix) <= 1e-5
    assert model == to_tree_ensemble(booster)  # reproducible bytes
    ensemble = onnx.load_from_string(model).graph.node[0]
    assert (ensemble.op_type, ensemble.domain) == ("TreeEnsemble", "ai.onnx.ml")
    assert len(model) < 0.45 * len(to_onnx(booster, 15))


def test_categorical_splits_become_membership_nodes() -> None:
    """Codes the model never saw (12, 13) and missing codes go where XGBoost sends them."""
    booster = _train(categorical=True)
    assert has_categorical_splits(booster)
    matrix = _data(3000, seed=4)
    matrix[:200, 3] = np.random.default_rng(5).integers(12, 14, 200)
    assert _max_diff(to_tree_ensemble(booster), booster, matrix) <= 1e-5
    with pytest.raises(BadInput, match="categorical splits, which onnxmltools"):
        to_onnx(booster, 15)


def test_one_leaf_trees_are_encoded() -> None:
    """A booster whose trees never split (every split costs more than it gains)."""
    booster = _train(categorical=False, rounds=3, min_split_loss=1e9)
    matrix = _data(50, seed=6)
    assert len(set(booster.inplace_predict(matrix).tolist())) == 1
    assert _max_diff(to_tree_ensemble(booster), booster, matrix) <= 1e-6


def test_reduced_precision_rounds_values_and_compresses_better() -> None:
    booster = _train(categorical=False, rounds=60)
    exact = to_tree_ensemble(booster)
    leaves_only = to_tree_ensemble(booster, round_leaves=True)
    both = to_tree_ensemble(booster, round_thresholds=True, round_leaves=True)
    for model, thresholds_rounded in ((leaves_only, False), (both, True)):
        attributes = {a.name: a for a in onnx.load_from_string(model).graph.node[0].attribute}
        leaves = numpy_helper.to_array(attributes["leaf_weights"].t)
        splits = numpy_helper.to_array(attributes["nodes_splits"].t)
        assert leaves.dtype == np.float32
        assert np.array_equal(leaves, leaves.astype(np.float16).astype(np.float32))
        fp16_splits = np.array_equal(splits, splits.astype(np.float16).astype(np.float32))
        assert fp16_splits is thresholds_rounded
        assert len(model) == len(exact)
        assert len(gzip.compress(model)) < len(gzip.compress(exact))
    matrix = _data(2000, seed=7)
    assert 1e-6 < _max_diff(leaves_only, booster, matrix) < 1e-2


@pytest.mark.filterwarnings("ignore::UserWarning")  # gblinear ignores tree parameters
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": "reg:squarederror"}, "objective is 'reg:squarederror'"),
        ({"booster": "gblinear"}, "only 'gbtree' boosters can be encoded"),
    ],
)
def test_unsupported_boosters_are_refused(params: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        to_tree_ensemble(_train(categorical=False, rounds=2, **params))


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
