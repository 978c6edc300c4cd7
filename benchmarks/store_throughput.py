"""Artifact store throughput: ArtifactStore vs plain boto3 on a 256 MB file, both directions.

Ours does more work (a SHA-256 before upload, a SHA-256 check as the download streams), so the
question is what that integrity costs. Both clients talk to the same embedded SeaweedFS;
plain boto3 keeps boto3's default TransferConfig. Repetitions alternate which client goes
first, and medians are compared. Also printed: the server's peak RSS (the kernel's VmHWM), since
its chunk size sets it. Last line: `ratio=<min(up, down) ours/plain throughput>`.

    .venv/bin/python benchmarks/store_throughput.py [--size-mb 256] [--reps 7]
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import boto3
from botocore.config import Config

from steps.core.store import ArtifactStore
from workflows.s3server import EmbeddedS3

BUCKET = "bench"
MIB = 1024 * 1024


def write_random_file(path: Path, size_mb: int) -> None:
    with path.open("wb") as handle:
        for _ in range(size_mb):
            handle.write(os.urandom(MIB))


def timed(action: Callable[[], object]) -> float:
    # Flush the previous run's dirty pages first, so its disk writeback does not slow this one.
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set so far, as the kernel counts it (Linux only)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="store-bench-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as server,
    ):
        work = Path(tmp)
        source = work / "source.bin"
        write_random_file(source, args.size_mb)
        plain = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        ours = ArtifactStore(server.endpoint, BUCKET, server.access_key, server.secret_key)
        ours.ensure_bucket()
        runs: dict[tuple[str, str], list[float]] = {}
        for rep in range(args.reps):
            ours_dest, plain_dest = work / "ours.bin", work / "plain.bin"
            uploads = {
                "ours": partial(ours.upload_file, source, f"ours/{rep}"),
                "plain": partial(plain.upload_file, str(source), BUCKET, f"plain/{rep}"),
            }
            downloads = {
                "ours": partial(ours.download_file, f"ours/{rep}", ours_dest),
                "plain": partial(plain.download_file, BUCKET, f"plain/{rep}", str(plain_dest)),
            }
            # Alternate who goes first, so neither always meets the other's leftovers.
            order = ["ours", "plain"] if rep % 2 == 0 else ["plain", "ours"]
            for direction, actions in (("up", uploads), ("down", downloads)):
                for name in order:
                    runs.setdefault((name, direction), []).append(timed(actions[name]))
            assert ours_dest.stat().st_size == plain_dest.stat().st_size == source.stat().st_size
            ours_dest.unlink()
            plain_dest.unlink()
        server_peak_mib = peak_rss_kib(server.pid) / 1024

    print(f"{args.size_mb} MB, {args.reps} repetitions, median MB/s")
    print(f"{'direction':<10}{'ours':>10}{'plain':>10}{'ratio':>8}")
    ratios = []
    for direction in ("up", "down"):
        ours_rate = args.size_mb / statistics.median(runs[("ours", direction)])
        plain_rate = args.size_mb / statistics.median(runs[("plain", direction)])
        ratios.append(ours_rate / plain_rate)
        print(f"{direction:<10}{ours_rate:>10.1f}{plain_rate:>10.1f}{ratios[-1]:>8.3f}")
    print(f"embedded S3 server peak RSS {server_peak_mib:.0f} MiB")
    print(f"ratio={min(ratios):.3f}")


if __name__ == "__main__":
    main()
