"""Distributed training step vs plain `xgboost.train` on the same data.

Data: 1,000,000 training rows x 30 float32 features (plus 100,000 validation rows), written
to the embedded S3 (SeaweedFS) as the dataset layout the step reads, sharded per worker.
Ours: the train step as the local engine runs it, a `python -m steps tracker` process and
N `python -m steps train` worker processes, each worker 1 thread (`cpu: 1`) on its own shard.
Reference: one process reading the same splits, `xgboost.train` with 2 threads. Both run
200 rounds (early stopping off) with the same parameters and per-round metrics on train and
valid, so the ratio is the cost of the collective.

Training time: quantile sketch + boosting (the worker logs it; the reference times the
same two calls). With start-up: wall time from launching the processes to their exit
(imports, reading S3, the reference profile, the bundle upload for ours). Peak RSS per
worker (VmHWM, sampled every 0.1 s) is compared with the worker's train shard in memory (its
DataFrame's `memory_usage(deep=True)`); the RSS of a process that has only imported the
step's libraries is printed alongside. Targets: training ratio <= 1.15, with start-up
<= 1.3, peak RSS <= 2x the shard. Then a scaling table for N = 1, 2, 4 (one run each).
Last line: `ratio=<median training time ours N=2 / median reference>`.

    .venv/bin/python benchmarks/train.py [--rows 1000000] [--reps 3]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from steps.core.names import Env
from steps.core.store import ArtifactStore
from steps.train.worker import TRAINING_SECONDS_LABEL
from workflows.s3server import EmbeddedS3

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 30
ROUNDS = 200
THREADS = 2
POLL_SECONDS = 0.1
SPEC = {
    "rounds": ROUNDS,
    "eta": 0.1,
    "max_depth": 6,
    "early_stopping_rounds": None,
    "scale_pos_weight": 1.0,
    "cpu": 1,
    "timeout_seconds": 600,
}

REFERENCE = """
import json, sys, time
import xgboost
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import encode, schema_from_manifest
from steps.core.specs import TrainSpec
from steps.core.store import ArtifactStore
from steps.train.worker import EVAL_METRICS
import os
store = ArtifactStore.from_env(os.environ)
uri, threads = sys.argv[1], int(sys.argv[2])
spec = TrainSpec.model_validate_json(sys.argv[3])
manifest = read_manifest(store, uri)
schema = schema_from_manifest(manifest)
train, valid = (load_split(store, uri, split) for split in (Split.TRAIN, Split.VALID))
x_train, x_valid = encode(train, schema), encode(valid, schema)
y_train, y_valid = (f[manifest.label].to_numpy(dtype="float32") for f in (train, valid))
started = time.perf_counter()
dtrain = xgboost.QuantileDMatrix(x_train, y_train, nthread=threads)
dvalid = xgboost.QuantileDMatrix(x_valid, y_valid, ref=dtrain, nthread=threads)
params = {"objective": "binary:logistic", "eval_metric": EVAL_METRICS, "tree_method": "hist",
          "eta": spec.eta, "max_depth": spec.max_depth, "seed": spec.seed, "nthread": threads,
          "scale_pos_weight": spec.scale_pos_weight}
xgboost.train(params, dtrain, num_boost_round=spec.rounds,
              evals=[(dtrain, "train"), (dvalid, "valid")], verbose_eval=False)
print(json.dumps({"train_s": time.perf_counter() - started}))
"""

IMPORTS_ONLY = """
import xgboost, pandas, boto3, pyarrow.parquet
import steps.train.worker
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")))
"""


@dataclass(frozen=True)
class Run:
    train_s: float
    """Slowest worker's quantile sketch + boosting (the group finishes with it)."""
    total_s: float
    peak_rss_mb: list[float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def frames(rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train, valid, test: float32 features, a label that depends on a few of them."""
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        x = rng.standard_normal((n, FEATURES), dtype=np.float32)
        logit = x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + 0.3 * np.sin(3 * x[:, 4])
        label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        data = {f"f{i:02d}": x[:, i] for i in range(FEATURES)}
        return pd.DataFrame({**data, "churned": label})

    return frame(rows), frame(rows // 10), frame(1000)


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process: its own peak. (`wait4`'s ru_maxrss would not do: Linux
    carries the parent's high-water mark across fork and exec, and ours holds the data.)"""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait_all(processes: list[subprocess.Popen[str]]) -> list[float]:
    """Wait for the processes, sampling each one's peak RSS (MB) until it exits; the last
    sample is at most POLL_SECONDS before the exit. A non-zero exit stops the benchmark."""
    peaks = [0.0] * len(processes)
    while any(process.poll() is None for process in processes):
        for index, process in enumerate(processes):
            peaks[index] = max(peaks[index], peak_rss_mb(process.pid) or 0.0)
        time.sleep(POLL_SECONDS)
    for process in processes:
        if process.returncode != 0:
            raise SystemExit(f"{process.args} exited {process.returncode}")
    return peaks


def run_ours(uri: str, workers: int, env: dict[str, str], out: Path) -> Run:
    port = free_port()
    spec = json.dumps({**SPEC, "workers": workers})
    step = [sys.executable, "-m", "steps"]
    started = time.perf_counter()
    tracker = subprocess.Popen(
        [
            *[*step, "tracker", "--workers", str(workers), "--port", str(port)],
            *["--host", "127.0.0.1", "--train-spec", spec],
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    logs = [out / f"worker-{rank}.log" for rank in range(workers)]
    processes = []
    for rank, log in enumerate(logs):
        with log.open("w") as sink:
            processes.append(
                subprocess.Popen(
                    [
                        *[*step, "train", "--dataset-uri", uri, "--train-spec", spec],
                        *["--rank", str(rank), "--tracker-host", "127.0.0.1"],
                        *["--tracker-port", str(port), "--out", str(out / f"out-{rank}")],
                    ],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
    peaks = wait_all(processes)
    wait_all([tracker])
    total = time.perf_counter() - started
    seconds = [
        float(line.rsplit(" ", 1)[1])
        for log in logs
        for line in log.read_text().splitlines()
        if TRAINING_SECONDS_LABEL in line
    ]
    return Run(max(seconds), total, peaks)


def run_reference(uri: str, env: dict[str, str], out: Path) -> Run:
    started = time.perf_counter()
    with (out / "reference.json").open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", REFERENCE, uri, str(THREADS), json.dumps(SPEC)],
            env=env,
            stdout=sink,
            text=True,
        )
        peaks = wait_all([process])
    seconds = json.loads((out / "reference.json").read_text())["train_s"]
    return Run(seconds, time.perf_counter() - started, peaks)


def import_baseline_mb(env: dict[str, str]) -> float:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_ONLY], env=env, capture_output=True, text=True, check=True
    )
    return float(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.datasets import write_dataset  # the dataset layout the step reads

    train, valid, test = frames(args.rows, seed=0)
    with (
        tempfile.TemporaryDirectory(prefix="mlpipe-bench-train-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as s3,
    ):
        store = ArtifactStore(s3.endpoint, f"bench-{uuid.uuid4().hex[:8]}", s3.access_key,
                              s3.secret_key)  # fmt: skip
        store.ensure_bucket()
        env = {
            **os.environ,
            Env.S3_ENDPOINT.value: s3.endpoint,
            Env.S3_BUCKET.value: store.bucket,
            Env.ACCESS_KEY.value: s3.access_key,
            Env.SECRET_KEY.value: s3.secret_key,
        }
        uris = {n: write_dataset(store, train, n, valid=valid, test=test) for n in (1, 2, 4)}
        shard_mb = train.iloc[0::2].memory_usage(deep=True).sum() / 2**20
        baseline = import_baseline_mb(env)
        print(f"data: {args.rows} x {FEATURES} train, {len(valid)} valid; {ROUNDS} rounds")

        ours: list[Run] = []
        reference: list[Run] = []
        for rep in range(args.reps):
            out = Path(tmp) / f"rep-{rep}"
            out.mkdir()
            ours.append(run_ours(uris[2], 2, env, out))
            reference.append(run_reference(uris[2], env, out))
            print(
                f"rep {rep}: ours N=2x1 train {ours[-1].train_s:.2f}s total {ours[-1].total_s:.2f}s"
                f" | xgboost.train {THREADS} threads train {reference[-1].train_s:.2f}s"
                f" total {reference[-1].total_s:.2f}s | peak RSS/worker"
                f" {max(ours[-1].peak_rss_mb):.0f} MB",
                flush=True,
            )
        train_ours = statistics.median(r.train_s for r in ours)
        train_ref = statistics.median(r.train_s for r in reference)
        total_ours = statistics.median(r.total_s for r in ours)
        total_ref = statistics.median(r.total_s for r in reference)
        peak = statistics.median(max(r.peak_rss_mb) for r in ours)
        print(f"training time   : ours {train_ours:.2f}s vs reference {train_ref:.2f}s "
              f"-> {train_ours / train_ref:.3f} (target <= 1.15)")  # fmt: skip
        print(f"with start-up   : ours {total_ours:.2f}s vs reference {total_ref:.2f}s "
              f"-> {total_ours / total_ref:.3f} (target <= 1.3)")  # fmt: skip
        print(f"peak RSS/worker : {peak:.0f} MB vs train shard {shard_mb:.0f} MB in memory "
              f"-> {peak / shard_mb:.2f}x (target <= 2); imports alone {baseline:.0f} MB, "
              f"above them {(peak - baseline) / shard_mb:.2f}x")  # fmt: skip
        print(
            f"reference peak RSS: {statistics.median(r.peak_rss_mb[0] for r in reference):.0f} MB"
        )

        print("scaling (1 thread per worker, one run each; N=2 is the median above):")
        print(f"{'N':>3} {'train s':>9} {'total s':>9} {'peak RSS MB/worker':>19}")
        for n in (1, 2, 4):
            if n == 2:
                row = (train_ours, total_ours, peak)
            else:
                out = Path(tmp) / f"scale-{n}"
                out.mkdir()
                run = run_ours(uris[n], n, env, out)
                row = (run.train_s, run.total_s, max(run.peak_rss_mb))
            print(f"{n:>3} {row[0]:>9.2f} {row[1]:>9.2f} {row[2]:>19.0f}", flush=True)
    print(f"ratio={train_ours / train_ref:.3f}")


if __name__ == "__main__":
    main()
