"""The coordinator of XGBoost's collective: `python -m steps tracker --workers N --port P`.

On Argo it runs as a daemon step; the N training workers (steps/train/worker.py) connect to it,
get their ranks, find each other, and train as one group. It exits 0 once every worker
has finished, and non-zero when the group does not form or finish in time, so a missing
worker fails the workflow instead of hanging it.

One timeout, the TrainSpec's `timeout_seconds`, bounds every wait: here, the group forming
and shutting down; in the workers, each collective operation. When a worker dies the others
fail at their next collective call (at once on a reset connection, else after the timeout),
and the workflow retries tracker and workers together.
"""

import argparse
import contextlib
import socket
import time

from xgboost.core import XGBoostError
from xgboost.tracker import RabitTracker

from steps.core.errors import StepError
from steps.core.specs import TrainSpec


class CollectiveError(StepError):
    """The training group did not form or finish: a worker missing, unreachable or too slow.

    Exit code 3 like other infrastructure failures: the data and the model are not at fault.
    """

    exit_code = 3


def xgboost_reason(error: XGBoostError) -> str:
    """The causes inside an XGBoost error, one line, without the native stack trace.

    XGBoost lists causes as `- [file.cc:123|12:00:00]: message` lines, then a backtrace.
    """
    causes = [
        line.split("]: ", 1)[-1].strip()
        for line in str(error).splitlines()
        if line.startswith("- [")
    ]
    return " ".join(causes) or str(error).splitlines()[0]


TIME_WAIT_SECONDS = 65
"""How long to wait for a port that only closed connections hold. XGBoost's tracker socket
does not set SO_REUSEADDR, and Linux keeps the tracker's side of a connection it closed in
TIME_WAIT for 60 s; a retried group whose new tracker binds the same port on the same host
(the local engine: every attempt on one loopback) waits that out instead of failing."""


def _held_by_closed_connections(reason: str, host: str, port: int) -> bool:
    """The bind failed on a port nobody listens on: only TIME_WAIT leftovers hold it."""
    if "Address already in use" not in reason:
        return False
    try:
        with socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, port), 1):
            return False
    except OSError:
        return True


def run_tracker(
    workers: int, port: int, host: str, timeout_seconds: int, max_seconds: int | None
) -> None:
    """Coordinate `workers` workers until all have finished.

    `timeout_seconds` bounds how long the group may take to form (every worker connected)
    and to shut down; `max_seconds` bounds the whole run, training included (None: no bound).
    Ranks follow the workers' task ids (`sortby="task"`), so worker I gets rank I.
    """
    where = f"tracker on {host}:{port} for {workers} worker(s)"
    waited_until = time.monotonic() + TIME_WAIT_SECONDS
    while True:
        try:
            tracker = RabitTracker(
                n_workers=workers, host_ip=host, port=port, sortby="task", timeout=timeout_seconds
            )
            break
        except (XGBoostError, OSError) as error:  # port taken, host unknown
            reason = xgboost_reason(error) if isinstance(error, XGBoostError) else str(error)
            if not _held_by_closed_connections(reason, host, port) or (
                time.monotonic() > waited_until
            ):
                raise CollectiveError(f"{where} could not start: {reason}") from None
            time.sleep(1)
    try:
        tracker.start()
        tracker.wait_for(max_seconds)
    except XGBoostError as error:
        limit = "no run limit" if max_seconds is None else f"run limit {max_seconds}s"
        raise CollectiveError(
            f"{where} failed (bootstrap timeout {timeout_seconds}s, {limit}): "
            f"{xgboost_reason(error)}"
        ) from None
    finally:
        # After a failure XGBoost raises the same error again when the tracker is freed;
        # freeing it here keeps that second copy out of `__del__` (and off stderr).
        with contextlib.suppress(XGBoostError):
            tracker.free()


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps tracker", description=__doc__)
    parser.add_argument("--workers", type=int, required=True, help="size of the training group")
    parser.add_argument("--port", type=int, required=True, help="port the workers connect to")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--train-spec",
        required=True,
        help="TrainSpec as JSON: its timeout_seconds bounds how long the workers may take "
        "to connect, and to disconnect at the end",
    )
    parser.add_argument(
        "--max-seconds",
        type=int,
        default=None,
        help="seconds for the whole run, training included (default: no limit)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    spec = TrainSpec.from_json_arg(args.train_spec)
    run_tracker(args.workers, args.port, args.host, spec.timeout_seconds, args.max_seconds)
    return 0
