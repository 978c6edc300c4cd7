"""Dataset digest throughput: our digest of a ~1 GB Parquet file vs only reading it into Arrow.

Ours is what the provenance step does before it writes anything: read the file through the
DataSpec (missing markers, label mapped to 0/1, typed features, categories kept as Parquet's
dictionary codes), canonicalise it (column order, dtypes, one sorted dictionary per
categorical column, rows read in row-key order) and hash the canonical bytes (`data_digest`,
BLAKE3, one column per thread). The reference is `pyarrow.parquet.read_table` of the same
file with its defaults (every column decoded, all cores), nothing else.

The data is churn-like (a unique string key, four categorical columns, numeric features,
a yes/no label) with full-precision floats, so the Parquet file is about as large as the
table in memory (~1.2x): a "1 GB file" of rounded sample data would be ~8 GB in memory.
Rows are written in key order, as exported tables usually are; `--shuffled` writes them in
random order, which costs our digest a sort and a gather of each window of rows it hashes.
The same file is read by both, alternating who goes first; medians of `--reps`. Also printed:
SHA-256 and BLAKE3 speed on this machine.
Last line: `ratio=<median ours / median read>` (target <= 1.25).

    .venv/bin/python benchmarks/hash_throughput.py [--size-mb 1024] [--reps 3] [--shuffled]
"""

import argparse
import gc
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from steps.data.dataset import load_dataset
from steps.data.synth import CONTRACTS, PAYMENT_METHODS, PLANS, REGIONS, data_spec
from steps.provenance.step import canonical_table, data_digest

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "age",
           "usage_gb", "balance", "latency_ms", "sessions", "score"]  # fmt: skip
BYTES_PER_ROW = 88  # measured: Parquet bytes per row of this table (snappy)
ROW_GROUP = 1_000_000


def write_data(path: Path, size_mb: int, shuffled: bool) -> int:
    """~size_mb of Parquet, written row group by row group so memory stays bounded."""
    rows = size_mb * 2**20 // BYTES_PER_ROW
    rng = np.random.default_rng(5)
    order = rng.permutation(rows) if shuffled else np.arange(rows)
    writer = None
    for start in range(0, rows, ROW_GROUP):
        ids = order[start : start + ROW_GROUP]
        n = len(ids)
        columns = {"customer_id": pa.array(np.char.add("C", np.char.zfill(ids.astype(str), 10)))}
        for name, values in (("region", REGIONS), ("plan", PLANS), ("contract", CONTRACTS),
                             ("payment_method", PAYMENT_METHODS)):  # fmt: skip
            columns[name] = pa.array(np.asarray(values)[rng.integers(0, len(values), n)])
        for name in NUMERIC:
            values = rng.normal(50, 20, n)
            values[rng.random(n) < 0.02] = np.nan
            columns[name] = pa.array(values, from_pandas=True)
        columns["churned"] = pa.array(np.where(rng.random(n) < 0.2, "yes", "no"))
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return rows


def ours(path: Path) -> str:
    return data_digest(canonical_table(load_dataset(str(path), data_spec(), None)))


def read(path: Path) -> int:
    return int(pq.read_table(path).num_rows)


ACTIONS: dict[str, Callable[[Path], object]] = {"ours": ours, "read": read}


def timed_fresh(action: str, path: Path) -> float:
    """Seconds `action` takes on `path` in a new process, its imports excluded."""
    command = [sys.executable, __file__, "--time", action, str(path)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def timed(action: Callable[[], object]) -> float:
    gc.collect()
    pa.default_memory_pool().release_unused()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def hash_speeds() -> str:
    data = os.urandom(256 * 2**20)
    sha = timed(lambda: hashlib.sha256(data).digest())
    one = timed(lambda: blake3.blake3(data).digest())
    auto = timed(lambda: blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest())
    gb = len(data) / 1e9
    return (
        f"SHA-256 {gb / sha:.2f} GB/s, BLAKE3 {gb / one:.2f} GB/s (1 thread), "
        f"{gb / auto:.2f} GB/s (all cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shuffled", action="store_true", help="rows not in key order")
    parser.add_argument("--time", nargs=2, metavar=("ACTION", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:  # one timed action, in the fresh process timed_fresh started
        action, file = args.time
        print(timed(lambda: ACTIONS[action](Path(file))))
        return
    print(hash_speeds())
    with tempfile.TemporaryDirectory(prefix="hash-bench-") as tmp:
        path = Path(tmp) / "data.parquet"
        rows = write_data(path, args.size_mb, args.shuffled)
        size = path.stat().st_size
        order = "shuffled" if args.shuffled else "key order"
        print(f"{rows} rows, {size / 2**20:.0f} MB Parquet, {order}")
        read(path)  # warm the page cache for both
        mine, theirs = [], []
        for rep in range(args.reps):
            pair = [("ours", mine), ("read", theirs)]
            for name, times in pair if rep % 2 == 0 else pair[::-1]:
                times.append(timed_fresh(name, path))
            print(f"rep {rep + 1}: ours {mine[-1]:.2f}s, read_table {theirs[-1]:.2f}s")
    ours_s, read_s = statistics.median(mine), statistics.median(theirs)
    print(
        f"median: ours {ours_s:.2f}s ({size / ours_s / 1e6:.0f} MB/s of Parquet), "
        f"read_table {read_s:.2f}s ({size / read_s / 1e6:.0f} MB/s)"
    )
    print(f"ratio={ours_s / read_s:.3f}")


if __name__ == "__main__":
    main()
