"""The audit step vs a bare GX validate: what our wrapper and built-in checks cost.

Ours: the whole audit as the step runs it (`run_audit`: read the Parquet file through the
DataSpec, the built-in checks, the GX suite, audit-result.json and the HTML report).
Reference: a bare GX `validate` of the same default suite on the same data already in memory
(as object columns, which GX 1.24 needs for its type expectations; converted before timing).
Each repetition runs in a fresh process so peak memory is measured per run (`ru_maxrss`
minus the process's RSS after imports), and compared with the audited DataFrame's in-memory
size (`memory_usage(deep=True)`). Targets: ratio <= 1.5, peak <= 3x the DataFrame.
Last line: `ratio=<median ours / median bare GX>`.

    .venv/bin/python benchmarks/audit.py [--rows 1000000] [--reps 3]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE_FILE = ROOT / "config" / "expectations" / "default.json"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(kind: str, data: Path) -> dict[str, float]:
    """One timed run in this (fresh) process: seconds, peak MB above baseline, frame MB."""
    import great_expectations as gx

    from steps.audit.step import _for_gx, build_suite, run_audit
    from steps.core.specs import AuditSpec
    from steps.data.dataset import read_table
    from steps.data.synth import data_spec

    spec = data_spec()
    audit = AuditSpec(suite=json.loads(SUITE_FILE.read_text()), min_rows=1)
    suite = build_suite(audit.suite)
    frame_mb = 0.0
    prepared = None
    # Both peaks count from before the data is read: the DataFrame is part of either's peak.
    baseline = rss_mb()
    if kind == "gx":
        frame = read_table(str(data), spec, None)
        frame_mb = frame.memory_usage(deep=True).sum() / 2**20
        prepared = _for_gx(frame, suite)
        del frame
    started = time.perf_counter()
    if kind == "ours":
        with tempfile.TemporaryDirectory() as out:
            run_audit(str(data), spec, audit, None, Path(out))
    else:
        context = gx.get_context(mode="ephemeral")
        batch = (
            context.data_sources.add_pandas("data")
            .add_dataframe_asset("table")
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": prepared})
        )
        batch.validate(suite)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak - baseline, "frame_mb": frame_mb}


def run_child(kind: str, data: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--data", str(data)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    value: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", choices=["ours", "gx"])
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.data)))
        return

    from steps.data.synth import generate, write_table

    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        data = Path(tmp) / "data.parquet"
        write_table(generate(args.rows, seed=11), data)
        ours, bare = [], []
        for rep in range(args.reps):
            # Alternate who goes first, so neither always gets the warmer page cache.
            pair = ("ours", "gx") if rep % 2 == 0 else ("gx", "ours")
            for kind in pair:
                (ours if kind == "ours" else bare).append(run_child(kind, data))
            print(
                f"rep {rep + 1}: ours {ours[-1]['seconds']:.2f}s (peak +{ours[-1]['peak_mb']:.0f}"
                f" MB), bare GX {bare[-1]['seconds']:.2f}s (peak +{bare[-1]['peak_mb']:.0f} MB)"
            )
    frame_mb = bare[0]["frame_mb"]
    ours_s = statistics.median(r["seconds"] for r in ours)
    bare_s = statistics.median(r["seconds"] for r in bare)
    peak = statistics.median(r["peak_mb"] for r in ours)
    bare_peak = statistics.median(r["peak_mb"] for r in bare)
    print(f"rows={args.rows} frame={frame_mb:.0f} MB reps={args.reps}")
    print(f"ours (full audit step) median {ours_s:.2f}s; bare GX validate median {bare_s:.2f}s")
    print(
        f"peak memory above imports: audit step +{peak:.0f} MB = {peak / frame_mb:.2f}x the "
        f"DataFrame; bare GX (DataFrame + validate) +{bare_peak:.0f} MB = "
        f"{bare_peak / frame_mb:.2f}x"
    )
    print(f"ratio={ours_s / bare_s:.3f}")


if __name__ == "__main__":
    main()
