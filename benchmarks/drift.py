"""Feature drift at scale: 1,000,000 window rows x 30 numeric features against a reference
profile, our drift statistics (`steps.drift.stats.feature_drift`, what the drift step runs
per feature) vs a bare NumPy/SciPy computation of the same PSI and KS statistics in one pass.

Both start from the same in-memory window and the same profile (steps/data/profile.py, counted
on 200,000 training rows); ours also does what the step needs beyond the bare loop (missing
values as their own bucket, histograms, reasons, result models, ranking). Their PSI and KS
values are checked to agree. Prints medians of wall time, and `ratio=<ours/bare>` last
(target <= 1.5). `--with-step` also times the whole step (`python -m steps drift`: Parquet
from S3, ONNX scoring of every row, prediction drift, report) for context.

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--features 30] [--repetitions 7]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from steps.core.names import Env
from steps.core.specs import DataSpec, DriftSpec
from steps.core.store import DEFAULT_REGION, ArtifactStore
from steps.data.features import FeatureSchema
from steps.data.profile import (
    GroupProfile,
    NumericProfile,
    assemble,
    count,
    layout_for,
    quantile_edges,
)
from steps.drift.stats import PSI_FLOOR, feature_drift
from workflows.s3server import EmbeddedS3

REFERENCE_ROWS = 200_000
DRIFTED_FEATURES = 5


def make_frame(rows: int, features: int, seed: int, shift: float) -> pd.DataFrame:
    """Numeric columns of mixed shapes, 1% missing; the first few shifted by `shift` sd."""
    rng = np.random.default_rng(seed)
    columns: dict[str, npt.NDArray[np.float64]] = {}
    for index in range(features):
        kind = index % 3
        if kind == 0:
            values = rng.normal(50, 10, rows)
        elif kind == 1:
            values = rng.lognormal(2, 0.7, rows)
        else:
            values = rng.poisson(3, rows).astype(np.float64)
        if index < DRIFTED_FEATURES:
            values = values + shift * values.std()
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"x{index:02d}"] = values
    return pd.DataFrame(columns)


def reference_profile(features: int) -> tuple[FeatureSchema, GroupProfile]:
    train = make_frame(REFERENCE_ROWS, features, seed=1, shift=0.0)
    schema = FeatureSchema.model_validate(
        {"features": [{"name": name, "kind": "numeric"} for name in train.columns]}
    )
    train["label"] = 0
    layout = layout_for(schema, "label", quantile_edges(train, schema), None)
    return schema, assemble(count(train, layout), layout).overall


def bare(frame: pd.DataFrame, profile: GroupProfile) -> dict[str, tuple[float, float, float]]:
    """PSI (bins + missing) and KS distance and p-value per feature, in one pass each."""
    out = {}
    for name, reference in profile.features.items():
        assert isinstance(reference, NumericProfile)
        values = frame[name].to_numpy()
        missing = np.count_nonzero(np.isnan(values))
        counts = np.bincount(
            np.searchsorted(reference.edges, values, side="right"),
            minlength=len(reference.edges) + 1,
        )
        counts[-1] -= missing
        ref = np.asarray(reference.counts, dtype=np.float64)
        p_ref, p_cur = ref / ref.sum(), counts / counts.sum()
        distance = float(np.max(np.abs(np.cumsum(p_ref) - np.cumsum(p_cur))))
        n, m = ref.sum(), counts.sum()
        p_value = float(stats.kstwo.sf(distance, round(n * m / (n + m))))
        e = np.append(ref, reference.missing)
        a = np.append(counts, missing).astype(np.float64)
        e = np.maximum(e / e.sum(), PSI_FLOOR)
        a = np.maximum(a / a.sum(), PSI_FLOOR)
        out[name] = (float(np.sum((a - e) * np.log(a / e))), distance, p_value)
    return out


def seconds(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def whole_step(window: pd.DataFrame, features: int) -> float:
    """The drift step end to end on the window, against a registered 30-feature model."""
    # The tests' helper registers a real model in a second; the repository root holds it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.stable_model import register_stable_model

    rng = np.random.default_rng(3)
    train = make_frame(50_000, features, seed=2, shift=0.0)
    logit = (train.fillna(0).to_numpy() - train.mean().to_numpy()) @ rng.normal(0, 0.1, features)
    train["churned"] = np.where(rng.random(len(train)) < 1 / (1 + np.exp(-logit)), "yes", "no")
    train["customer_id"] = [f"c{i}" for i in range(len(train))]
    spec = DataSpec(label="churned", positive_class="yes", row_key="customer_id")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedS3(Path(tmp) / "s3") as server:
        store = ArtifactStore(
            server.endpoint, f"bench-{uuid.uuid4().hex[:8]}", server.access_key, server.secret_key
        )
        store.ensure_bucket()
        register_stable_model(store, train, "bench")
        path = Path(tmp) / "window.parquet"
        window.to_parquet(path)
        store.upload_file(path, "incoming/window.parquet")
        env = {
            **os.environ,
            Env.S3_ENDPOINT.value: server.endpoint,
            Env.S3_BUCKET.value: store.bucket,
            Env.S3_REGION.value: DEFAULT_REGION,
            Env.ACCESS_KEY.value: server.access_key,
            Env.SECRET_KEY.value: server.secret_key,
        }
        command = [
            sys.executable, "-m", "steps", "drift",
            "--window-uri", store.uri("incoming/window.parquet"),
            "--data-spec", spec.model_dump_json(),
            "--drift-spec", DriftSpec().model_dump_json(),
            "--model-name", "bench", "--out", str(Path(tmp) / "out"),
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--with-step", action="store_true", help="also time the whole step")
    args = parser.parse_args()

    schema, profile = reference_profile(args.features)
    window = make_frame(args.rows, args.features, seed=9, shift=0.5)
    spec = DriftSpec()

    # Same numbers first: a fast wrong answer is no answer.
    ours_result = {r.name: r for r in feature_drift(window, schema, profile, spec)}
    for name, (psi, distance, p_value) in bare(window, profile).items():
        assert np.isclose(ours_result[name].psi, psi), name
        assert np.isclose(ours_result[name].statistic, distance), name
        assert np.isclose(ours_result[name].p_value, p_value, rtol=1e-6, atol=1e-300), name
    flagged = sorted(name for name, r in ours_result.items() if r.drifted)

    # Alternating runs (the machine is shared: load changes hit both alike), then medians.
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(args.repetitions):
        times["bare"].append(seconds(lambda: bare(window, profile)))
        times["ours"].append(seconds(lambda: feature_drift(window, schema, profile, spec)))
    bare_s, ours_s = (statistics.median(times[name]) for name in ("bare", "ours"))

    print(f"{args.rows:,} rows x {args.features} numeric features, reference profile of "
          f"{REFERENCE_ROWS:,} rows; medians of {args.repetitions} runs")  # fmt: skip
    print(f"  drifted features found: {', '.join(flagged)}")
    print(f"  {'bare numpy/scipy PSI + KS':<34} {bare_s:8.3f} s")
    print(f"  {'ours (steps.drift.stats)':<34} {ours_s:8.3f} s")
    if args.with_step:
        step_s = whole_step(window, args.features)
        print(f"  {'whole step (python -m steps drift)':<34} {step_s:8.3f} s (one run)")
    print(f"ratio={ours_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
