"""Evaluation at scale: 1,000,000 test rows and 20 slices, our whole evaluation
(`steps.evaluate.step.evaluate_rows`: encode, ONNX scoring, metrics with intervals overall and
per slice, reliability, robustness, behavioural checks, gate; then the JSON and the HTML
report) vs a bare ONNX Runtime scoring pass over the same rows (the already encoded matrix,
the same model, the same session options).

Both start from the test rows in memory (reading the split from S3 is the same for any
evaluation, and is left out of both; ours takes them in the step's batches). No champion:
with one, ours scores the rows twice. Prints medians of wall time over interleaved
repetitions, and `ratio=<ours/bare>` last (target <= 3).

    .venv/bin/python benchmarks/evaluate.py [--rows 1000000] [--repetitions 5]
"""

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
import pandas as pd
import xgboost

from steps.core.specs import BehaviourCheck, EvaluateSpec, SliceAxis, SliceGroup
from steps.data.dataset import FeatureKind
from steps.data.features import Feature, FeatureSchema, encode
from steps.data.synth import CATEGORIES, LABEL, NUMERIC, generate
from steps.evaluate.report import render_report
from steps.evaluate.step import SCORE_ROWS, batches_of, evaluate_rows
from steps.quantize.session import ONNX_INPUT, ONNX_PROBABILITIES, session_options
from steps.quantize.step import to_onnx

SCHEMA = FeatureSchema(
    features=[
        *(Feature(name=name, kind=FeatureKind.NUMERIC) for name in NUMERIC),
        *(
            Feature(name=name, kind=FeatureKind.CATEGORICAL, categories=list(values))
            for name, values in CATEGORIES.items()
        ),
    ]
)
# 5 regions + 3 plans + 4 payment methods + 5 tenure bins + 3 support-call bins = 20 slices
# (synth leaves these columns complete, so there are no `missing` slices).
GROUPS = [
    SliceGroup(by=[SliceAxis(column="region")]),
    SliceGroup(by=[SliceAxis(column="plan")]),
    SliceGroup(by=[SliceAxis(column="payment_method")]),
    SliceGroup(by=[SliceAxis(column="tenure_months", bins=[6, 12, 24, 48])]),
    SliceGroup(by=[SliceAxis(column="support_calls", bins=[1, 3])]),
]
SPEC = EvaluateSpec(
    slices=GROUPS,
    checks=[
        BehaviourCheck(name="calls", kind="directional", feature="support_calls", shift=2),
        BehaviourCheck(name="charges", kind="invariance", feature="total_charges", shift=1),
    ],
)


def labelled(rows: int, seed: int) -> tuple[pd.DataFrame, npt.NDArray[np.int8]]:
    frame = generate(rows, seed)
    return frame, (frame[LABEL] == "yes").to_numpy(dtype=np.int8)


def train_model(folder: Path) -> Path:
    """A model the size the pipeline trains (100 rounds, depth 6) on 50,000 rows."""
    train, labels = labelled(50_000, seed=1)
    matrix = xgboost.DMatrix(encode(train, SCHEMA), label=labels)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2}
    booster = xgboost.train(params, matrix, num_boost_round=100)
    onnx = folder / "model.onnx"
    onnx.write_bytes(to_onnx(booster, 15))
    return onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx = train_model(Path(tmp))
        test, labels = labelled(args.rows, seed=2)
        test[LABEL] = labels
        matrix = encode(test, SCHEMA)
        session = onnxruntime.InferenceSession(
            str(onnx), session_options(), providers=["CPUExecutionProvider"]
        )
        ours_times, bare_times = [], []
        for _ in range(args.repetitions):
            started = time.perf_counter()
            session.run([ONNX_PROBABILITIES], {ONNX_INPUT: matrix})
            bare_times.append(time.perf_counter() - started)

            started = time.perf_counter()
            evaluation = evaluate_rows(
                partial(batches_of, test, SCORE_ROWS), LABEL, SCHEMA, onnx, None, GROUPS, SPEC,
                lambda done, total: None, model_digest="-", dataset_uri="-", report_uri="-",
            )  # fmt: skip
            evaluation.model_dump_json()
            render_report(evaluation)
            ours_times.append(time.perf_counter() - started)
        slices = len(evaluation.slices)
    ours, bare = statistics.median(ours_times), statistics.median(bare_times)
    print(f"rows={args.rows} slices={slices} repetitions={args.repetitions}")
    print(f"auc={evaluation.metrics.auc:.4f} worst_slice={evaluation.worst_slice}")
    print(
        f"evaluation_seconds_median={ours:.3f} (all: {', '.join(f'{t:.3f}' for t in ours_times)})"
    )
    print(f"bare_ort_seconds_median={bare:.3f} (all: {', '.join(f'{t:.3f}' for t in bare_times)})")
    print(f"ratio={ours / bare:.3f}")


def _listed(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


if __name__ == "__main__":
    main()
