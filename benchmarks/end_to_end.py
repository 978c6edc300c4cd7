"""The whole pipeline vs the script it replaces, at several sizes, in one run.

Ours: `mlpipe run` on the synthetic churn data (a fresh store per run, memoization off, so
nothing is reused). The reference: what a data scientist writes instead: pandas reads the
file, a random 80/10/10 split, `xgboost.train` with the pipeline's parameters on 2 threads,
predict, AUC. Both are timed wall-clock and their whole process tree's RSS is sampled every
50 ms (peak of the sum). Per-step times come from the run's record (`run.json`).

Memory per step: each step process's peak RSS (the same samples) minus its import baseline
(the RSS of a fresh process that imported the step's module and the modules pyarrow imports
on first use while the step runs: `pyarrow.dataset` for reading Parquet and
`pyarrow.pandas_compat` for `to_pandas`, ~6 MB; audit, provenance, training and evaluate
import their own libraries at module level, so nothing else is missed), against the largest
input the step holds: the whole file as a DataFrame for audit and provenance, one train shard
(0.8 of the rows over the shards) for a training worker, the test split (0.1) for evaluate.
What remains above the baseline is the step's working set: its data, and what its libraries
allocate on first use whatever the size (onnxruntime's session, GX's context).
The embedded S3 server's and the engine's own peaks are printed too (no input to compare).

Targets: ours / bare <= 3 at 200k rows and <= 1.5 at 4M, with at least the bare script's
test AUC; every step's peak above its baseline <= 2x its input; the whole tree <= 1.2x the
bare script's peak. Last line: `ratio=<ours/bare at the largest size>`.

    .venv/bin/python benchmarks/end_to_end.py [--rows 200000 1000000 4000000] [--shards 2]
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

from steps.core.registry import STEPS
from steps.deploy.local import stop_server
from workflows.config import PipelineConfig, load_config
from workflows.run_record import RECORD_FILE

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".mlpipe" / "bench" / "end_to_end"
SAMPLE_SECONDS = 0.05
STORE, ENGINE = "s3 server (weed)", "engine (mlpipe run)"
LAZY_IMPORTS = ("pyarrow.dataset", "pyarrow.pandas_compat")
"""Imported by pyarrow on first use (reading Parquet, `to_pandas`) in every step that reads
data: part of the baseline, not of the data."""
BARE = """
import sys, time
import numpy as np, pandas as pd, xgboost as xgb
from sklearn.metrics import roc_auc_score
path, label, positive, categorical, rounds, eta, depth, early, seed = sys.argv[1:10]
frame = pd.read_parquet(path)
y = (frame.pop(label).astype(str) == positive).astype(np.float32).to_numpy()
frame = frame.drop(columns=["customer_id"])
for column in categorical.split(","):
    frame[column] = frame[column].astype("category")
order = np.random.default_rng(int(seed)).permutation(len(frame))
cut1, cut2 = int(0.8 * len(order)), int(0.9 * len(order))
parts = [order[:cut1], order[cut1:cut2], order[cut2:]]
train, valid, test = (xgb.DMatrix(frame.iloc[p], y[p], enable_categorical=True) for p in parts)
params = {"objective": "binary:logistic", "eta": float(eta), "max_depth": int(depth),
          "eval_metric": ["logloss", "auc"], "nthread": 2, "tree_method": "hist", "seed": int(seed)}
booster = xgb.train(params, train, int(rounds), evals=[(valid, "valid")],
                    early_stopping_rounds=int(early), verbose_eval=False)
best = (0, booster.best_iteration + 1)
print("auc", roc_auc_score(y[parts[2]], booster.predict(test, iteration_range=best)))
"""


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss: int
    auc: float
    steps: dict[str, float]
    step_peaks: dict[str, int]
    """Peak RSS of the largest process of each step (`python -m steps <name>`)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000, 4_000_000])
    parser.add_argument("--shards", type=int, help="training workers (default: the config's)")
    args = parser.parse_args()
    pipeline = load_config(ROOT / "config" / "local.yaml").pipeline
    shards = args.shards or pipeline.train.workers
    ratio = 0.0
    baselines: dict[str, int] = {}
    for rows in args.rows:
        data = sample(rows)
        ours = run_pipeline(data, shards)
        bare = run_bare(data, pipeline)
        ratio = ours.seconds / bare.seconds
        print(
            f"{rows:>9} rows: pipeline {ours.seconds:6.1f} s, {ours.peak_rss / 2**30:.2f} GB, "
            f"AUC {ours.auc:.4f} | bare {bare.seconds:6.1f} s, {bare.peak_rss / 2**30:.2f} GB, "
            f"AUC {bare.auc:.4f} | ratio {ratio:.2f}"
        )
        steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in ours.steps.items())
        print(f"{'':>15} steps (s): {steps}", flush=True)
        frame = frame_bytes(data)
        inputs = {"audit": frame, "provenance": frame, "evaluate": frame // 10}
        inputs["train"] = math.ceil(frame * 0.8 / shards)
        for name, peak in ours.step_peaks.items():
            if name not in STEPS:
                print(f"{'':>15} {name}: peak {peak / 2**20:.0f} MB")
                continue
            if name not in baselines:
                baselines[name] = import_baseline(name)
            above = peak - baselines[name]
            held = inputs.get(name)
            versus = f", {above / held:.2f}x its input {held / 2**20:.0f} MB" if held else ""
            print(
                f"{'':>15} {name}: peak {peak / 2**20:.0f} MB, "
                f"{above / 2**20:.0f} MB above its import baseline{versus}"
            )
        print(
            f"{'':>15} whole tree / bare: {ours.peak_rss / bare.peak_rss:.2f}x "
            f"(input as a DataFrame {frame / 2**20:.0f} MB, {shards} shards)",
            flush=True,
        )
    print(f"ratio={ratio:.3f}")


def sample(rows: int) -> Path:
    path = DATA / f"churn-{rows}.parquet"
    if not path.exists():
        mlpipe = [sys.executable, "-m", "workflows.cli"]
        command = [*mlpipe, "data", "synth", "--rows", str(rows), "--out", str(path)]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return path


def frame_bytes(data: Path) -> int:
    """The file's size as the DataFrame a script would hold."""
    return int(pd.read_parquet(data).memory_usage(deep=True).sum())


def import_baseline(step: str) -> int:
    """RSS of a fresh process that imported the step's module as `python -m steps` does and
    pyarrow's lazily imported modules (what running it costs before it reads any data)."""
    code = (
        "import importlib, sys, psutil, steps.__main__; from steps.core.registry import STEPS; "
        f"steps.__main__.keep_out({step!r}); importlib.import_module(STEPS[{step!r}].module); "
        # Only into a step that uses pyarrow: the light steps never load it.
        f"[importlib.import_module(m) for m in {LAZY_IMPORTS!r} if 'pyarrow' in sys.modules]; "
        "print(psutil.Process().memory_info().rss)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return int(output.split()[-1])


def run_pipeline(data: Path, shards: int) -> Measured:
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        folder = Path(tmp)
        settings = {
            "storage.data_dir": folder / "s3",
            "engine.workdir": folder / "runs",
            "deploy.state_dir": folder / "serving",
            "provenance.memoize": "false",
            "train.workers": shards,
        }
        command = [sys.executable, "-m", "workflows.cli", "run", "--data", str(data)]
        for key, value in settings.items():
            command += ["--set", f"{key}={value}"]
        try:
            seconds, peak, _, step_peaks = measure(command)
        finally:
            stop_server(folder / "serving")
        (record_path,) = (folder / "runs").glob(f"*/*/{RECORD_FILE}")
        record = json.loads(record_path.read_text())
        if record["phase"] != "Succeeded":
            raise SystemExit(f"pipeline run {record['name']} {record['phase']}")
        steps = {node["path"]: node["seconds"] or 0.0 for node in record["nodes"]}
        evaluate = next(node for node in record["nodes"] if node["template"] == "evaluate")
        return Measured(seconds, peak, float(evaluate["parameters"]["auc"]), steps, step_peaks)


def run_bare(data: Path, pipeline: PipelineConfig) -> Measured:
    train, spec = pipeline.train, pipeline.data
    arguments = [
        str(data),
        spec.label,
        str(spec.positive_class),
        ",".join(spec.categorical),
        str(train.rounds),
        str(train.eta),
        str(train.max_depth),
        str(train.early_stopping_rounds),
        str(train.seed),
    ]
    seconds, peak, output, _ = measure([sys.executable, "-c", BARE, *arguments])
    auc = float(output.split("auc", 1)[1])
    return Measured(seconds, peak, auc, {}, {})


def measure(command: list[str]) -> tuple[float, int, str, dict[str, int]]:
    """Wall time, peak RSS of the whole process tree (sampled), stdout, and the peak RSS
    of the largest process of each step."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = 0
    step_peaks: dict[str, int] = {}
    done = threading.Event()

    def sample_rss() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.wait(SAMPLE_SECONDS):
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for member in tree:
                try:
                    rss = member.memory_info().rss
                    step = step_name(member.cmdline())
                except psutil.NoSuchProcess:
                    continue
                total += rss
                if step is not None:
                    step_peaks[step] = max(step_peaks.get(step, 0), rss)
            peak = max(peak, total)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} exited {process.returncode}:\n{output[-2000:]}")
    return seconds, peak, output, step_peaks


def step_name(cmdline: list[str]) -> str | None:
    """`<python> -m steps <name> ...` -> name; the embedded S3 server and the engine itself
    (`mlpipe run`) get names of their own, so the whole tree's peak can be told apart."""
    for index in range(len(cmdline) - 2):
        if cmdline[index : index + 2] == ["-m", "steps"] and cmdline[index + 2] in STEPS:
            return cmdline[index + 2]
    if cmdline[1:2] == ["mini"] and Path(cmdline[0]).name == "weed":
        return STORE
    if cmdline[1:4] == ["-m", "workflows.cli", "run"]:
        return ENGINE
    return None


if __name__ == "__main__":
    main()
