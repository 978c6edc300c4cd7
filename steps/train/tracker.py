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

import contextlib

from xgboost.core import XGBoostError
from xgboost.tracker import RabitTracker

from steps.core.errors import MlpipeError
from steps.core.harness import Outcome, StepContext
from steps.core.names import Env
from steps.core.registry import HOST, MAX_SECONDS, PORT, WORKERS
from steps.core.specs import TrainSpec


class CollectiveError(MlpipeError):
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


def run_tracker(
    workers: int, port: int, host: str, timeout_seconds: int, max_seconds: int | None
) -> None:
    """Coordinate `workers` workers until all have finished.

    `timeout_seconds` bounds how long the group may take to form (every worker connected)
    and to shut down; `max_seconds` bounds the whole run, training included (None: no bound).
    Ranks follow the workers' task ids (`sortby="task"`), so worker I gets rank I.
    """
    where = f"tracker on {host}:{port} for {workers} worker(s)"
    try:
        tracker = RabitTracker(
            n_workers=workers, host_ip=host, port=port, sortby="task", timeout=timeout_seconds
        )
    except (XGBoostError, OSError) as error:  # port taken, host unknown
        reason = xgboost_reason(error) if isinstance(error, XGBoostError) else str(error)
        raise CollectiveError(f"{where} could not start: {reason}") from None
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


def listen_address(ctx: StepContext) -> str:
    """`--host`, else the pod's own IP, else every address. A retried group's tracker is a
    new pod with a new IP, so binding that IP (not 0.0.0.0) never meets the port its
    predecessor left in TCP TIME_WAIT: XGBoost's socket sets no SO_REUSEADDR."""
    return ctx.optional(HOST) or ctx.environ.get(Env.POD_IP.value) or "0.0.0.0"


def run(ctx: StepContext) -> Outcome:
    timeout = ctx.spec(TrainSpec).timeout_seconds
    workers, port, host = ctx.get(WORKERS), ctx.get(PORT), listen_address(ctx)
    run_tracker(workers, port, host, timeout, ctx.optional(MAX_SECONDS))
    return Outcome()
