"""What the quantize step measures about each candidate encoding, on the test split.

Fidelity (probabilities and AUC, overall and per slice, against XGBoost's own), size (raw
and gzip-compressed), and speed under ONNX Runtime (session creation, single-row latency,
batch-1024 throughput). Timings are interleaved across candidates, one call each in turn,
so a noisy neighbour on a shared machine slows every candidate alike instead of whichever
happened to be measured at the time.
"""

import gzip
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import onnxruntime

from steps.core.errors import BadInput
from steps.core.names import Encoding
from steps.core.records import Record
from steps.quantize.session import open_session, predict_proba

BATCH_ROWS = 1024
SINGLE_ROW_CALLS = 400
BATCH_CALLS = 15
SESSION_BUILDS = 3


class SliceDelta(Record):
    value: str
    rows: int
    auc: float | None
    """None when the slice holds one class only: AUC is undefined there."""
    auc_delta: float | None
    judged: bool
    """Large enough (QuantizeSpec.min_slice_rows) and both classes present."""


class Measurement(Record):
    encoding: Encoding
    description: str
    exact: bool
    bytes: int
    gzip_bytes: int
    session_ms: float
    max_abs_diff: float
    worst_row: int
    auc: float
    auc_delta: float
    slices: list[SliceDelta]
    latency_p50_us: float
    latency_p99_us: float
    batch_rows_per_second: float


@dataclass(frozen=True)
class Aucs:
    """AUC overall and per slice value (None where the slice holds one class only)."""

    overall: float
    slices: dict[str, float | None]


@dataclass(frozen=True)
class TestSplit:
    """The encoded test rows, their labels, slice membership and XGBoost's probabilities:
    calibrated (what every encoding must reproduce) and its own."""

    matrix: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    slices: Mapping[str, npt.NDArray[np.bool_]]
    expected: npt.NDArray[np.float32]
    uncalibrated: npt.NDArray[np.float32]

    @cached_property
    def expected_aucs(self) -> Aucs:
        """XGBoost's AUCs, computed once for every candidate to be compared with."""
        return aucs(self.labels, self.expected, self.slices)

    @property
    def expected_auc(self) -> float:
        return self.expected_aucs.overall


def aucs(
    labels: npt.NDArray[np.int8],
    scores: npt.NDArray[np.float32],
    slices: Mapping[str, npt.NDArray[np.bool_]],
) -> Aucs:
    """AUC overall and in each slice, from one sort of the scores.

    roc_auc_score gets the rows in score order, so its own sort finds them sorted, and a
    slice's rows are taken from the sorted ones, never sorted again. The AUC is the same
    number as from the rows in any order: the ROC points are the label counts accumulated
    at the end of each run of tied scores, whatever the order inside a run.
    """
    order = np.argsort(scores, kind="stable")
    ranked_labels = labels[order]
    ranked_scores = scores[order].astype(np.float64)
    if len(np.unique(ranked_labels)) < 2:
        raise BadInput(
            f"the test split's {len(labels)} rows hold one class: AUC, and so the "
            "candidates' AUC change, is undefined"
        )
    per_slice: dict[str, float | None] = {}
    for value, members in slices.items():
        inside = members[order]
        held = ranked_labels[inside]
        one_class = len(np.unique(held)) < 2
        per_slice[value] = None if one_class else _auc(held, ranked_scores[inside])
    return Aucs(_auc(ranked_labels, ranked_scores), per_slice)


def _auc(labels: npt.NDArray[np.int8], scores: npt.NDArray[np.float64]) -> float:
    # Imported here: the model card reads this module's records and never computes an AUC,
    # and sklearn costs it about a second.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def slice_deltas(split: TestSplit, candidate: Aucs, min_rows: int) -> list[SliceDelta]:
    deltas = []
    for value, members in split.slices.items():
        rows = int(np.count_nonzero(members))
        actual, expected = candidate.slices[value], split.expected_aucs.slices[value]
        if actual is None or expected is None:
            deltas.append(SliceDelta(value=value, rows=rows, auc=None, auc_delta=None,
                                     judged=False))  # fmt: skip
            continue
        deltas.append(
            SliceDelta(
                value=value,
                rows=rows,
                auc=actual,
                auc_delta=actual - expected,
                judged=rows >= min_rows,
            )
        )
    return deltas


@dataclass(frozen=True)
class _Speed:
    session_ms: float
    latency_p50_us: float
    latency_p99_us: float
    batch_rows_per_second: float


def measure(
    models: Mapping[Encoding, bytes],
    sessions: Mapping[Encoding, onnxruntime.InferenceSession],
    scores: Mapping[Encoding, npt.NDArray[np.float32]],
    descriptions: Mapping[Encoding, str],
    exact: frozenset[Encoding],
    split: TestSplit,
    min_slice_rows: int,
) -> list[Measurement]:
    """One Measurement per model, in the order given, from each model's session and its
    probabilities on every test row."""
    speeds = _time(models, sessions, split.matrix)
    # After the timings, which must have the cores to themselves: the sorts and most of
    # roc_auc_score release the GIL, so each model's AUCs are computed on a core of its own.
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        expected = pool.submit(lambda: split.expected_aucs)
        futures = {e: pool.submit(aucs, split.labels, scores[e], split.slices) for e in models}
        expected.result()
        ranked = {encoding: future.result() for encoding, future in futures.items()}
    measurements = []
    for encoding, model in models.items():
        diff = np.abs(scores[encoding].astype(np.float64) - split.expected)
        worst = int(np.argmax(diff))
        speed = speeds[encoding]
        measurements.append(
            Measurement(
                encoding=encoding,
                description=descriptions[encoding],
                exact=encoding in exact,
                bytes=len(model),
                gzip_bytes=len(gzip.compress(model, compresslevel=9, mtime=0)),
                session_ms=speed.session_ms,
                max_abs_diff=float(diff[worst]),
                worst_row=worst,
                auc=ranked[encoding].overall,
                auc_delta=ranked[encoding].overall - split.expected_auc,
                slices=slice_deltas(split, ranked[encoding], min_slice_rows),
                latency_p50_us=speed.latency_p50_us,
                latency_p99_us=speed.latency_p99_us,
                batch_rows_per_second=speed.batch_rows_per_second,
            )
        )
    return measurements


def _time(
    models: Mapping[Encoding, bytes],
    sessions: Mapping[Encoding, onnxruntime.InferenceSession],
    matrix: npt.NDArray[np.float32],
) -> dict[Encoding, _Speed]:
    order = list(models)
    builds = _interleaved(order, SESSION_BUILDS, lambda e, _: open_session(models[e]))
    rows = [matrix[i % len(matrix) : i % len(matrix) + 1] for i in range(SINGLE_ROW_CALLS)]
    singles = _interleaved(
        order, SINGLE_ROW_CALLS, lambda e, i: predict_proba(sessions[e], rows[i])
    )
    batch = np.resize(matrix, (BATCH_ROWS, matrix.shape[1]))
    batches = _interleaved(order, BATCH_CALLS, lambda e, _: predict_proba(sessions[e], batch))
    return {
        e: _Speed(
            session_ms=float(np.median(builds[e])) * 1e3,
            latency_p50_us=float(np.percentile(singles[e], 50)) * 1e6,
            latency_p99_us=float(np.percentile(singles[e], 99)) * 1e6,
            batch_rows_per_second=BATCH_ROWS / float(np.median(batches[e])),
        )
        for e in order
    }


def _interleaved(
    order: Sequence[Encoding], calls: int, call: Callable[[Encoding, int], object]
) -> dict[Encoding, list[float]]:
    """Seconds per call for each encoding; each round calls every encoding once, starting
    from a different one each round."""
    seconds: dict[Encoding, list[float]] = {e: [] for e in order}
    for index in range(calls):
        shift = index % len(order)
        for encoding in [*order[shift:], *order[:shift]]:
            started = time.perf_counter()
            call(encoding, index)
            seconds[encoding].append(time.perf_counter() - started)
    return seconds
