"""Per-task overhead of the local engine: a 7-task chain of `python -c pass` tasks run by
`run_workflow` (against a real embedded S3 server) vs the same 7 commands run back to back
by a bare subprocess loop. Prints a table of medians, and `ratio=<engine/bare>` last
(target <= 1.5).

    .venv/bin/python benchmarks/engine_overhead.py [--repetitions 7] [--tasks 7]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from steps.core.store import ArtifactStore
from workflows.engine import EngineContext, run_workflow
from workflows.s3server import EmbeddedS3

COMMAND = ["python", "-c", "pass"]


def chain_workflow(tasks: int) -> dict[str, Any]:
    """task-0 -> task-1 -> ... : every task waits for the previous one, like the pipeline."""
    dag = [
        {"name": f"task-{i}", "template": "noop", **({"depends": f"task-{i - 1}"} if i else {})}
        for i in range(tasks)
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "overhead-"},
        "spec": {
            "entrypoint": "chain",
            "templates": [
                {"name": "chain", "dag": {"tasks": dag}},
                {"name": "noop", "container": {"image": "python:3.11", "command": COMMAND}},
            ],
        },
    }


def bare_loop(tasks: int) -> float:
    argv = [sys.executable, *COMMAND[1:]]
    started = time.perf_counter()
    for _ in range(tasks):
        subprocess.run(argv, check=True, env=os.environ)
    return time.perf_counter() - started


def engine(workflow: dict[str, Any], ctx: EngineContext) -> float:
    started = time.perf_counter()
    result = run_workflow(workflow, {}, ctx)
    elapsed = time.perf_counter() - started
    if not result.succeeded:
        raise SystemExit(f"engine run failed: {result.message}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=7)
    args = parser.parse_args()
    workflow = chain_workflow(args.tasks)
    with (
        tempfile.TemporaryDirectory(prefix="engine-overhead-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as server,
    ):
        store = ArtifactStore(
            server.endpoint, f"bench-{uuid.uuid4().hex[:8]}", server.access_key, server.secret_key
        )
        store.ensure_bucket()
        ctx = EngineContext(
            store=store,
            key_format="{{workflow.name}}/{{pod.name}}",
            workdir=Path(tmp) / "runs",
            parallelism=2,
            env=dict(os.environ),
            secrets={},
        )
        engine(workflow, ctx)  # warm-up: imports, first S3 connection
        bare_loop(args.tasks)
        engine_times, bare_times = [], []
        for _ in range(args.repetitions):
            engine_times.append(engine(workflow, ctx))
            bare_times.append(bare_loop(args.tasks))
    engine_median = statistics.median(engine_times)
    bare_median = statistics.median(bare_times)
    per_task = (engine_median - bare_median) / args.tasks
    print(f"{'runner':<22}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, times in (
        ("engine (7-task chain)", engine_times),
        ("bare subprocess loop", bare_times),
    ):
        print(f"{name:<22}{statistics.median(times):>10.3f}{min(times):>10.3f}{max(times):>10.3f}")
    print(
        f"tasks={args.tasks} repetitions={args.repetitions} overhead/task={per_task * 1000:.1f} ms"
    )
    print(f"ratio={engine_median / bare_median:.2f}")


if __name__ == "__main__":
    main()
