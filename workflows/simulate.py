"""`mlpipe schedule simulate`: days of a synthetic data stream through the scheduled run.

Day 0 has no model yet, so its run trains the first one. Every later day writes a new
window (`python -m steps synth`, drifted from `drift_day` on), makes it the day's data and
runs the CronWorkflow's workflow with the local engine, exactly as `run-once` does: the
drift check decides, and the real training pipeline runs when it says so. Each day's
window is also what a retraining trains on, so after a retraining the new model's
reference is the drifted data and the following days are quiet again.

A simulation uses its own model name (`<model>-sim-<time>`), so it never moves the real
model's `stable.json`; the days pass in minutes, so the model's age stays near zero.
"""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from steps.core.errors import BadInput
from steps.core.names import Step
from workflows.config import LoadedConfig
from workflows.cron import CronTask
from workflows.engine import NodePhase, Observer
from workflows.local_run import local_storage, with_overrides
from workflows.pipeline import TaskName
from workflows.schedule import ScheduledRun, run_scheduled

SIMULATIONS_PREFIX = "simulations"
DEFAULT_DRIFT = ("monthly_charges=1.0",)


@dataclass(frozen=True)
class Scenario:
    """The stream: how many days, from which day it drifts and how, how big each day is."""

    days: int = 10
    drift_day: int | None = 6
    covariate_drift: tuple[str, ...] = DEFAULT_DRIFT
    """`FEATURE=STRENGTH`, as `mlpipe data synth --covariate-drift` takes them."""
    new_categories: tuple[str, ...] = ()
    """`FEATURE=VALUE:SHARE`."""
    concept_drift: float = 0.0
    rows: int = 3000
    rounds: int = 20
    seed: int = 7

    def synth_arguments(self, day: int) -> list[str]:
        """`python -m steps synth` options for the day's window (a new seed every day)."""
        args = ["--rows", str(self.rows), "--seed", str(self.seed + day)]
        if self.drift_day is None or day < self.drift_day:
            return args
        return args + drift_arguments(self.covariate_drift, self.new_categories, self.concept_drift)


def drift_arguments(shifts: Sequence[str], categories: Sequence[str], concept: float) -> list[str]:
    """`python -m steps synth` options for a drifted window."""
    arguments = [a for shift in shifts for a in ("--covariate-drift", shift)]
    arguments += [a for category in categories for a in ("--new-category", category)]
    return [*arguments, "--concept-drift", str(concept)] if concept else arguments


@dataclass(frozen=True)
class SimulatedDay:
    day: int
    drifted: bool
    retrain: bool | None
    reason: str
    promoted: bool
    succeeded: bool
    seconds: float


def simulate(config: LoadedConfig, scenario: Scenario, console: Console) -> list[SimulatedDay]:
    """Run every day of `scenario`, printing each as it ends and a table at the end."""
    if scenario.days < 1 or scenario.rows < 1 or scenario.rounds < 1:
        raise BadInput("simulate: --days, --rows and --rounds must be at least 1")
    if scenario.drift_day is not None and not 1 <= scenario.drift_day <= scenario.days:
        raise BadInput(f"simulate: --drift-day must be between 1 and --days ({scenario.days})")
    pipeline = config.pipeline
    model = f"{pipeline.model_name}-sim-{datetime.now(UTC):%Y%m%d%H%M%S}"
    # Small days train in seconds: fewer rounds, and the row bounds scaled to the window.
    config = with_overrides(
        config,
        {
            "model_name": model,
            "train.rounds": scenario.rounds,
            "audit.min_rows": min(pipeline.audit.min_rows, scenario.rows),
            "drift.min_window_rows": min(pipeline.drift.min_window_rows, scenario.rows),
            "drift.window_uri": None,
        },
    )
    console.print(f"simulating {scenario.days} days as model {model}", highlight=False)
    environ = dict(os.environ)
    days = []
    with local_storage(config.pipeline, environ) as storage, tempfile.TemporaryDirectory() as tmp:
        for day in range(scenario.days + 1):
            started = time.monotonic()
            window = Path(tmp) / f"day-{day:03d}.parquet"
            _synthesize(window, scenario.synth_arguments(day))
            key = f"{SIMULATIONS_PREFIX}/{model}/day={day:03d}/window.parquet"
            storage.store.upload_file(window, key)
            day_config = with_overrides(config, {"data.uri": storage.store.uri(key)})
            scheduled = run_scheduled(day_config, storage, environ, Observer())
            result = _day(day, scenario, scheduled, time.monotonic() - started)
            console.print(_line(result), highlight=False)
            days.append(result)
    console.print(table(days))
    return days


def _synthesize(out: Path, arguments: list[str]) -> None:
    # The generator is a step: workflows never run step code in-process.
    command = [sys.executable, "-m", "steps", Step.SYNTH.value, "--out", str(out), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BadInput(f"simulate: the synth step failed: {done.stderr.strip()}")


def _day(day: int, scenario: Scenario, scheduled: ScheduledRun, seconds: float) -> SimulatedDay:
    deploy = f"{CronTask.RETRAIN}.{TaskName.DEPLOY}"
    promoted = any(
        node.path == deploy and node.phase is NodePhase.SUCCEEDED for node in scheduled.result.nodes
    )
    reason = scheduled.reason if scheduled.result.succeeded else scheduled.result.message
    return SimulatedDay(
        day=day,
        drifted=scenario.drift_day is not None and day >= scenario.drift_day,
        retrain=scheduled.retrain,
        reason=reason,
        promoted=promoted,
        succeeded=scheduled.result.succeeded,
        seconds=seconds,
    )


def _decision(day: SimulatedDay) -> str:
    if day.retrain is None:
        return "failed"
    return "retrain" if day.retrain else "keep"


def _line(day: SimulatedDay) -> str:
    promoted = "promoted" if day.promoted else "not promoted"
    return f"day {day.day}: {_decision(day)} ({promoted}, {day.seconds:.0f}s): {day.reason}"


def table(days: list[SimulatedDay]) -> Table:
    """Day, data, decision, reason, promoted: the simulation at a glance."""
    view = Table(title="Scheduled retraining, simulated")
    for column in ("day", "data", "decision", "reason", "promoted", "run"):
        view.add_column(column, overflow="fold")
    for day in days:
        view.add_row(
            str(day.day),
            "drifted" if day.drifted else "baseline",
            _decision(day),
            day.reason,
            "yes" if day.promoted else "no",
            f"{'ok' if day.succeeded else 'failed'} {day.seconds:.0f}s",
        )
    return view
