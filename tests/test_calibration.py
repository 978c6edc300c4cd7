"""Calibration: Platt scaling fitted on validation margins, chosen by log loss, folded exactly
into every ONNX encoding (real XGBoost, real ONNX Runtime)."""

import numpy as np
import pytest
import xgboost

from steps.core.errors import BadInput
from steps.core.names import Encoding
from steps.quantize.calibration import expected_calibration_error, fit_calibration, identity
from steps.quantize.encoding import encode_model, to_onnx, to_tree_ensemble
from steps.quantize.session import open_session, predict_proba


def _shifted(rows: int, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Margins whose true probability is sigmoid(margin - shift): what a positive-class
    weight of exp(shift) does to a well-fitted booster."""
    rng = np.random.default_rng(seed)
    margins = rng.normal(0.0, 2.0, rows) + shift
    labels = (rng.random(rows) < 1 / (1 + np.exp(-(margins - shift)))).astype(np.int8)
    return margins, labels


def test_platt_undoes_a_class_weight_shift() -> None:
    margins, labels = _shifted(20_000, seed=1, shift=np.log(5.0))
    calibration = fit_calibration(margins, labels)
    assert calibration.method == "platt"
    assert calibration.scale == pytest.approx(1.0, abs=0.05)
    assert calibration.shift == pytest.approx(-np.log(5.0), abs=0.08)
    assert calibration.log_loss["platt"] < calibration.log_loss["none"]
    assert calibration.ece_before > 0.1 and calibration.ece_after < 0.02
    # On fresh rows from the same process the calibrated scores stay calibrated.
    fresh, fresh_labels = _shifted(20_000, seed=2, shift=np.log(5.0))
    assert expected_calibration_error(fresh_labels, calibration.probabilities(fresh)) < 0.02
    raw = 1 / (1 + np.exp(-fresh))
    assert expected_calibration_error(fresh_labels, raw) > 0.1


def test_calibrated_margins_stay_as_they_are() -> None:
    margins, labels = _shifted(20_000, seed=3, shift=0.0)
    calibration = fit_calibration(margins, labels)
    assert calibration.method == "none" and (calibration.scale, calibration.shift) == (1.0, 0.0)
    assert "log loss" in calibration.reason


def test_a_reversed_score_is_never_flipped_by_calibration() -> None:
    margins, labels = _shifted(5_000, seed=4, shift=0.0)
    calibration = fit_calibration(-margins, labels)
    assert calibration.method == "none" and "not positive" in calibration.reason


def test_one_class_cannot_be_calibrated() -> None:
    with pytest.raises(BadInput, match="both classes in the validation split; it has 10 rows"):
        fit_calibration(np.zeros(10), np.zeros(10, np.int8))


def _booster() -> tuple[xgboost.Booster, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(3000, 3)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    labels = (np.nan_to_num(matrix[:, 0]) + rng.normal(size=3000) > 1.0).astype(int)
    data = xgboost.DMatrix(matrix, label=labels)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1,
              "scale_pos_weight": 4.0}  # fmt: skip
    return xgboost.train(params, data, num_boost_round=20), matrix, labels.astype(np.int8)


# opset5-fp16 is left out: its rounded thresholds send rows down other branches, which is
# for the quantize step's tolerances to judge, not calibration.
@pytest.mark.parametrize(
    "encoding", [Encoding.BASELINE, Encoding.OPSET5, Encoding.OPSET5_FP16_LEAVES]
)
def test_every_encoding_serves_the_calibrated_probability(encoding: Encoding) -> None:
    booster, matrix, labels = _booster()
    margins = booster.inplace_predict(matrix, predict_type="margin")
    calibration = fit_calibration(margins, labels)
    assert calibration.method == "platt"
    served = predict_proba(open_session(encode_model(booster, encoding, 15, calibration)), matrix)
    expected = calibration.probabilities(margins)
    tolerance = 1e-6 if encoding in (Encoding.BASELINE, Encoding.OPSET5) else 1e-2
    assert np.abs(served - expected).max() <= tolerance
    assert np.abs(served - booster.inplace_predict(matrix)).max() > 0.05


def test_no_calibration_leaves_the_export_byte_for_byte() -> None:
    booster, _, _ = _booster()
    assert to_tree_ensemble(booster, calibration=identity()) == to_tree_ensemble(booster)
    assert to_onnx(booster, 15, identity()) == to_onnx(booster, 15)
