"""Inference: the ONNX model the quantize step chooses, in ONNX Runtime, vs XGBoost's own
`Booster.inplace_predict`, on the same model and the same machine, in one run.

The model is the size the pipeline trains (200k rows x 30 features, 200 rounds, depth 6).
The choice is the step's own (steps.quantize.step.select with the default QuantizeSpec, on
held-out rows). Measured, each in REPEATS rounds that alternate ours and XGBoost so a busy
neighbour slows both alike, medians printed:
- single-row latency p50: target ratio ours/xgboost <= 0.125;
- batch-1024 throughput: target ratio ours/xgboost >= 1.0;
- model file size vs the opset-1 export: target <= 0.45.
XGBoost runs with its default threads and with one, and is credited with the faster of the
two for each measure; ONNX Runtime runs with steps.quantize.session.session_options().
Last line: `ratio=<single-row p50 ours/xgboost>`.

    .venv/bin/python benchmarks/inference.py [--rows 200000] [--rounds 200]
"""

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import numpy.typing as npt
import xgboost

from steps.core.names import Encoding
from steps.core.specs import QuantizeSpec
from steps.quantize.calibration import identity
from steps.quantize.encoding import to_onnx
from steps.quantize.measure import TestSplit
from steps.quantize.session import open_session, predict_proba
from steps.quantize.step import select

FEATURES = 30
BATCH = 1024
REPEATS = 5
SINGLE_CALLS = 2000
BATCH_CALLS = 40


def train(
    rows: int, rounds: int
) -> tuple[xgboost.Booster, npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """A booster on synthetic rows (interactions, missing values, a categorical-like code
    column), and held-out rows with labels."""
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(rows + 20_000, FEATURES)).astype(np.float32)
    matrix[:, :5] = rng.integers(0, 10, size=(len(matrix), 5))
    matrix[rng.random(matrix.shape) < 0.02] = np.nan
    x = np.nan_to_num(matrix)
    logit = (
        x[:, 5]
        - 0.8 * x[:, 6]
        + 0.5 * x[:, 7] * x[:, 8]
        + 0.3 * (x[:, 0] > 4)
        + x[:, 9:20].sum(1) * 0.1
    )
    labels = (rng.random(len(matrix)) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 0}
    data = xgboost.DMatrix(matrix[:rows], label=labels[:rows])
    booster = xgboost.train(params, data, num_boost_round=rounds)
    return booster, matrix[rows:], labels[rows:]


def median_call(
    predict: Callable[[npt.NDArray[np.float32]], object], inputs: list[npt.NDArray[np.float32]]
) -> float:
    """Median seconds of one call per input."""
    times = []
    for matrix in inputs:
        started = time.perf_counter()
        predict(matrix)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def predictors(
    booster: xgboost.Booster, model: bytes
) -> dict[str, Callable[[npt.NDArray[np.float32]], object]]:
    session = open_session(model)
    one_thread = booster.copy()
    one_thread.set_param({"nthread": 1})
    return {
        "ours": partial(predict_proba, session),
        "xgboost, default threads": booster.inplace_predict,
        "xgboost, 1 thread": one_thread.inplace_predict,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    booster, held_out, labels = train(args.rows, args.rounds)
    took = time.perf_counter() - started
    print(f"trained {args.rounds} rounds on {args.rows} x {FEATURES} in {took:.0f} s")
    expected = np.asarray(booster.inplace_predict(held_out), np.float32)
    # Uncalibrated, so the ONNX side and inplace_predict compute the same thing.
    split = TestSplit(held_out, labels, {}, expected, expected)
    selection = select(booster, split, QuantizeSpec(), identity())
    baseline = to_onnx(booster, QuantizeSpec().target_opset)
    print(f"quantize chose {selection.chosen}: {selection.reason}")

    rows = [held_out[i : i + 1] for i in range(SINGLE_CALLS)]
    batches = [held_out[:BATCH]] * BATCH_CALLS
    single: dict[str, list[float]] = {}
    batched: dict[str, list[float]] = {}
    for _ in range(REPEATS):
        for name, predict in predictors(booster, selection.model).items():
            single.setdefault(name, []).append(median_call(predict, rows))
            batched.setdefault(name, []).append(median_call(predict, batches))
    p50 = {name: statistics.median(times) for name, times in single.items()}
    rows_per_s = {name: BATCH / statistics.median(times) for name, times in batched.items()}
    for name in p50:
        print(f"{name}: single-row p50 {p50[name] * 1e6:.1f} µs, "
              f"batch-{BATCH} {rows_per_s[name]:,.0f} rows/s")  # fmt: skip
    xgb_single = min((p50[n], n) for n in p50 if n != "ours")
    xgb_batch = max((rows_per_s[n], n) for n in rows_per_s if n != "ours")
    single_ratio = p50["ours"] / xgb_single[0]
    batch_ratio = rows_per_s["ours"] / xgb_batch[0]
    size_ratio = len(selection.model) / len(baseline)
    print(f"single-row p50 ratio ours/{xgb_single[1]}: {single_ratio:.3f} (target <= 0.125)")
    print(f"batch-{BATCH} throughput ratio ours/{xgb_batch[1]}: {batch_ratio:.2f} (target >= 1.0)")
    print(f"model size: {selection.chosen} {len(selection.model):,} bytes vs {Encoding.BASELINE} "
          f"{len(baseline):,}: ratio {size_ratio:.3f} (target <= 0.45)")  # fmt: skip
    print(f"ratio={single_ratio:.4f}")


if __name__ == "__main__":
    main()
