"""ONNX encodings of an XGBoost binary classifier, all with the interface of
steps/quantize/session.py.

Two ways to write the same trees:
- the baseline, onnxmltools' `TreeEnsembleClassifier` (ai.onnx.ml opset 1), which spells out
  every node's tree id, node id and mode as a string and every leaf's class id;
- a compact `TreeEnsemble` (ai.onnx.ml opset 5, float32) built here from the booster's JSON
  model: modes as one byte each, thresholds and leaf weights as packed float32 tensors, no
  per-node ids. It is read from the JSON model rather than from the onnxmltools graph because
  the JSON holds what prediction uses (float32 thresholds and leaves, default directions,
  categorical splits, base score), with no converter in between whose graph layout may change.

Reduced precision rounds thresholds and/or leaf weights to the nearest float16 value but keeps
them float32 (ONNX Runtime runs this operator in float32/float64 only): the file is as large,
but the zeroed low mantissa bits make it compress better. Whether the moved predictions are
acceptable is for the quantize step's tolerances to decide.
"""

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import xgboost
from onnx import TensorProto, helper, numpy_helper
from onnxmltools.convert.common.data_types import FloatTensorType

from steps.core.errors import BadInput
from steps.core.names import Encoding
from steps.quantize.calibration import Calibration
from steps.quantize.session import ONNX_INPUT, ONNX_PROBABILITIES

# A fixed graph name: the converter's default is a random UUID, which would give the same
# model a new digest on every export.
GRAPH_NAME = "mlpipe_xgboost"
ML_DOMAIN = "ai.onnx.ml"
TREE_ENSEMBLE_OPSET = 5
ONNX_OPSET = 21
IR_VERSION = 10
"""Pinned (with the opsets) so the bytes do not change with the installed onnx package."""

BRANCH_LT = 1
BRANCH_MEMBER = 6
AGGREGATE_SUM = 1
POST_TRANSFORM_NONE = 0
SUPPORTED_OBJECTIVE = "binary:logistic"


ROUNDED: dict[Encoding, tuple[bool, bool]] = {
    Encoding.OPSET5: (False, False),
    Encoding.OPSET5_FP16_LEAVES: (False, True),
    Encoding.OPSET5_FP16: (True, True),
}
"""Opset-5 encodings: (thresholds rounded to float16, leaf weights rounded to float16)."""

DESCRIPTIONS = {
    Encoding.BASELINE: "onnxmltools TreeEnsembleClassifier, ai.onnx.ml opset 1, float32",
    Encoding.OPSET5: "TreeEnsemble, ai.onnx.ml opset 5, float32",
    Encoding.OPSET5_FP16_LEAVES: "opset 5, leaf weights rounded to float16 precision",
    Encoding.OPSET5_FP16: "opset 5, thresholds and leaf weights rounded to float16 precision",
}
EXACT = frozenset({Encoding.BASELINE, Encoding.OPSET5})
"""Encodings that hold the booster's own float32 values (differences come from summation)."""


def to_onnx(
    booster: xgboost.Booster, target_opset: int, calibration: Calibration | None = None
) -> bytes:
    """The baseline: onnxmltools' export (same bytes for the same booster), calibrated.

    With a calibration the classifier's LOGISTIC becomes NONE, which makes ONNX Runtime
    output the signed margin [-m, m]; a scale, a shift and an explicit Sigmoid follow.
    """
    if has_categorical_splits(booster):
        raise BadInput(
            "the booster has categorical splits, which onnxmltools' TreeEnsembleClassifier "
            "cannot express; use the opset-5 encoding"
        )
    features = booster.num_features()
    # onnxmltools reads split features from the booster's text dump and only understands
    # `f<column index>`; the real names stay in feature-schema.json.
    renamed = booster.copy()
    renamed.feature_names = [f"f{index}" for index in range(features)]
    model = onnxmltools.convert_xgboost(
        renamed,
        name=GRAPH_NAME,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, features]))],
        target_opset=target_opset,
    )
    if calibration is not None and calibration.method != "none":
        _calibrated_classifier(model, calibration, target_opset)
    return bytes(model.SerializeToString())


def _calibrated_classifier(
    model: onnx.ModelProto, calibration: Calibration, target_opset: int
) -> None:
    """Rewrite onnxmltools' graph in place: classifier scores, then sigmoid(a * m + b)."""
    (classifier,) = model.graph.node
    if not any(opset.domain in ("", "ai.onnx") for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", target_opset))
    for attribute in classifier.attribute:
        if attribute.name == "post_transform":
            attribute.s = b"NONE"
    classifier.output[1] = "margins"
    scale, shift = np.float32(calibration.scale), np.float32(calibration.shift)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray([[scale, scale]], np.float32), "platt_scale"),
            numpy_helper.from_array(np.asarray([[-shift, shift]], np.float32), "platt_shift"),
        ]
    )
    model.graph.node.extend(
        [
            helper.make_node("Mul", ["margins", "platt_scale"], ["scaled_margins"]),
            helper.make_node("Add", ["scaled_margins", "platt_shift"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], [ONNX_PROBABILITIES]),
        ]
    )
    onnx.checker.check_model(model)


def has_categorical_splits(booster: xgboost.Booster) -> bool:
    return any(1 in tree["split_type"] for tree in _trees(_model(booster)))


def _model(booster: xgboost.Booster) -> dict[str, Any]:
    """The booster's JSON model (the `learner` object of XGBoost's JSON schema)."""
    learner: dict[str, Any] = json.loads(bytes(booster.save_raw("json")))["learner"]
    return learner


def _trees(learner: dict[str, Any]) -> list[dict[str, Any]]:
    """The trees of a binary:logistic gbtree model; anything else is BadInput."""
    objective = learner["objective"]["name"]
    if objective != SUPPORTED_OBJECTIVE:
        raise BadInput(
            f"the booster's objective is {objective!r}; the ONNX encoding supports "
            f"{SUPPORTED_OBJECTIVE!r} only"
        )
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
        raise BadInput("the booster predicts several targets; the ONNX encoding supports one")
    kind = learner["gradient_booster"]["name"]
    if kind != "gbtree":
        raise BadInput(f"the booster is {kind!r}; only 'gbtree' boosters can be encoded")
    trees: list[dict[str, Any]] = learner["gradient_booster"]["model"]["trees"]
    return trees


@dataclass(frozen=True)
class _Trees:
    """The opset-5 TreeEnsemble attributes, gathered tree by tree."""

    roots: list[int]
    features: list[int]
    modes: list[int]
    splits: list[float]
    true_ids: list[int]
    true_leaf: list[int]
    false_ids: list[int]
    false_leaf: list[int]
    missing_true: list[int]
    members: list[float]
    leaves: list[float]


def _gather(trees: list[dict[str, Any]]) -> _Trees:
    out = _Trees([], [], [], [], [], [], [], [], [], [], [])
    for tree in trees:
        left = np.asarray(tree["left_children"], dtype=np.int64)
        right = np.asarray(tree["right_children"], dtype=np.int64)
        is_leaf = left == -1
        # Each node's position in the global node (or leaf) arrays of the ensemble.
        position = np.where(
            is_leaf,
            len(out.leaves) + np.cumsum(is_leaf) - 1,
            len(out.features) + np.cumsum(~is_leaf) - 1,
        )
        values = np.asarray(tree["split_conditions"], dtype=np.float32)
        out.leaves.extend(values[is_leaf].tolist())
        if is_leaf[0]:
            # A one-leaf tree: a node whose both branches reach that leaf.
            out.roots.append(len(out.features))
            _branch(out, 0, BRANCH_LT, 0.0, (int(position[0]), 1), (int(position[0]), 1), True)
            continue
        out.roots.append(int(position[0]))
        categories = _categories(tree)
        for node in np.flatnonzero(~is_leaf):
            default_left = bool(tree["default_left"][node])
            low = (int(position[left[node]]), int(is_leaf[left[node]]))
            high = (int(position[right[node]]), int(is_leaf[right[node]]))
            feature = int(tree["split_indices"][node])
            if tree["split_type"][node] == 1:
                # XGBoost sends the listed categories right and everything else left.
                out.members.extend([*categories[int(node)], math.nan])
                _branch(out, feature, BRANCH_MEMBER, 0.0, high, low, not default_left)
            else:
                # XGBoost goes left when value < threshold.
                _branch(out, feature, BRANCH_LT, float(values[node]), low, high, default_left)
    return out


def _branch(
    out: _Trees,
    feature: int,
    mode: int,
    split: float,
    true: tuple[int, int],
    false: tuple[int, int],
    missing_true: bool,
) -> None:
    out.features.append(feature)
    out.modes.append(mode)
    out.splits.append(split)
    out.true_ids.append(true[0])
    out.true_leaf.append(true[1])
    out.false_ids.append(false[0])
    out.false_leaf.append(false[1])
    out.missing_true.append(int(missing_true))


def _categories(tree: dict[str, Any]) -> dict[int, list[float]]:
    """The category set of each categorical split node."""
    sets = {}
    for node, start, size in zip(
        tree["categories_nodes"], tree["categories_segments"], tree["categories_sizes"], strict=True
    ):
        sets[int(node)] = [float(c) for c in tree["categories"][int(start) : int(start + size)]]
    return sets


def _base_margin(learner: dict[str, Any]) -> float:
    """The logit of the base score (XGBoost stores it as a probability, e.g. "[4.3E-1]")."""
    params = learner["learner_model_param"]
    score = np.float32(str(params["base_score"]).strip("[]"))
    return float(np.float32(np.log(score / (np.float32(1) - score))))


def _as_float16(values: list[float]) -> npt.NDArray[np.float32]:
    return np.asarray(values, dtype=np.float32).astype(np.float16).astype(np.float32)


def to_tree_ensemble(
    booster: xgboost.Booster,
    round_thresholds: bool = False,
    round_leaves: bool = False,
    calibration: Calibration | None = None,
) -> bytes:
    """The booster as an opset-5 TreeEnsemble graph (same bytes for the same booster).

    The graph: margins = TreeEnsemble(input) (sum of leaves, [N, 1]); then [-m, m] + [-b, b]
    with b the base margin; then Sigmoid gives `probabilities` [N, 2] = [1 - p, p].
    ONNX Runtime ignores post_transform=LOGISTIC for a single target, so the sigmoid is an
    explicit node; computing column 0 as sigmoid(-margin) keeps column 1 bit-identical to
    a lone sigmoid. Platt scaling sigmoid(a * (m + base) + c) folds into the same two
    constants: signs [-a, a] and base [-(a * base + c), a * base + c].
    """
    learner = _model(booster)
    trees = _gather(_trees(learner))
    scale, base = 1.0, _base_margin(learner)
    if calibration is not None and calibration.method != "none":
        scale, base = calibration.scale, calibration.scale * base + calibration.shift
    splits = _as_float16(trees.splits) if round_thresholds else np.asarray(trees.splits, np.float32)
    leaves = _as_float16(trees.leaves) if round_leaves else np.asarray(trees.leaves, np.float32)
    attributes: dict[str, Any] = {
        "aggregate_function": AGGREGATE_SUM,
        "post_transform": POST_TRANSFORM_NONE,
        "n_targets": 1,
        "tree_roots": trees.roots,
        "nodes_featureids": trees.features,
        "nodes_modes": numpy_helper.from_array(np.asarray(trees.modes, np.uint8)),
        "nodes_splits": numpy_helper.from_array(splits),
        "nodes_truenodeids": trees.true_ids,
        "nodes_trueleafs": trees.true_leaf,
        "nodes_falsenodeids": trees.false_ids,
        "nodes_falseleafs": trees.false_leaf,
        "nodes_missing_value_tracks_true": trees.missing_true,
        "leaf_targetids": [0] * len(trees.leaves),
        "leaf_weights": numpy_helper.from_array(leaves),
    }
    if trees.members:
        attributes["membership_values"] = numpy_helper.from_array(
            np.asarray(trees.members, np.float32)
        )
    nodes = [
        helper.make_node("TreeEnsemble", [ONNX_INPUT], ["margin"], domain=ML_DOMAIN, **attributes),
        helper.make_node("Mul", ["margin", "signs"], ["signed_margin"]),
        helper.make_node("Add", ["signed_margin", "signed_base"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [ONNX_PROBABILITIES]),
    ]
    initializers = [
        numpy_helper.from_array(np.asarray([[-scale, scale]], np.float32), "signs"),
        numpy_helper.from_array(np.asarray([[-base, base]], np.float32), "signed_base"),
    ]
    features = booster.num_features()
    graph = helper.make_graph(
        nodes,
        GRAPH_NAME,
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, features])],
        [helper.make_tensor_value_info(ONNX_PROBABILITIES, TensorProto.FLOAT, [None, 2])],
        initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", ONNX_OPSET),
            helper.make_opsetid(ML_DOMAIN, TREE_ENSEMBLE_OPSET),
        ],
        ir_version=IR_VERSION,
        producer_name="mlpipe",
    )
    onnx.checker.check_model(onnx_model)
    return bytes(onnx_model.SerializeToString())


def encode_model(
    booster: xgboost.Booster,
    encoding: Encoding,
    target_opset: int,
    calibration: Calibration | None = None,
) -> bytes:
    """The booster in the named encoding, ending with the calibration when given."""
    if encoding is Encoding.BASELINE:
        return to_onnx(booster, target_opset, calibration)
    round_thresholds, round_leaves = ROUNDED[encoding]
    return to_tree_ensemble(booster, round_thresholds, round_leaves, calibration)
