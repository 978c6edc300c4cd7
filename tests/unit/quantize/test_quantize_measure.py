"""The quantize step's fidelity pass: every row scored in parallel chunks gives one call's
numbers, and AUCs from one shared sort are sklearn's on the rows as given (real XGBoost,
real ONNX Runtime)."""

import numpy as np
import pytest
import xgboost
from sklearn.metrics import roc_auc_score

from steps.core.errors import BadInput
from steps.quantize.encoding import to_onnx, to_tree_ensemble
from steps.quantize.measure import aucs
from steps.quantize.session import SCORE_CHUNK_ROWS, open_session, predict_proba, score_all


def test_scoring_in_parallel_chunks_gives_one_calls_probabilities() -> None:
    """Rows spread over several chunks and threads come back in order, each bit for bit
    what one call over the whole matrix gives (the parity gate's max |Δp| relies on it)."""
    rng = np.random.default_rng(7)
    train = rng.normal(size=(2000, 4)).astype(np.float32)
    labels = (train[:, 0] + 0.5 * train[:, 1] * train[:, 2] > 0).astype(np.float32)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
        xgboost.DMatrix(train, labels),
        num_boost_round=90,  # above ORT's 80-tree threshold for splitting trees over threads
    )
    matrix = rng.normal(size=(2 * SCORE_CHUNK_ROWS + 123, 4)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.05] = np.nan
    for model in (to_onnx(booster, 15), to_tree_ensemble(booster)):
        session = open_session(model)
        whole = predict_proba(session, matrix)
        chunked = score_all(session, matrix, threads=3)
        assert chunked.shape == whole.shape and np.array_equal(chunked, whole)
        assert np.array_equal(score_all(session, matrix[:5], threads=2), whole[:5])


def test_aucs_from_one_sort_are_sklearns_on_the_rows_as_given() -> None:
    """Ties (scores rounded to few values) and slices in any row order: exactly sklearn's
    numbers; a slice holding one class has no AUC."""
    rng = np.random.default_rng(11)
    rows = 5000
    labels = (rng.random(rows) < 0.3).astype(np.int8)
    scores = np.round(rng.random(rows) * 0.5 + 0.4 * labels, 2).astype(np.float32)
    region = rng.integers(0, 3, rows)
    slices = {"a": region == 0, "b": region == 1, "c": (region == 2) & (labels == 0)}
    result = aucs(labels, scores, slices)
    assert result.overall == roc_auc_score(labels, scores.astype(np.float64))
    for value in ("a", "b"):
        members = slices[value]
        expected = roc_auc_score(labels[members], scores[members].astype(np.float64))
        assert result.slices[value] == expected
    assert result.slices["c"] is None
    with pytest.raises(BadInput, match="the test split's 10 rows hold one class"):
        aucs(np.zeros(10, np.int8), np.linspace(0, 1, 10, dtype=np.float32), {})
