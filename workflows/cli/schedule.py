"""`mlpipe schedule apply|run-once|simulate`: the retraining CronWorkflow on the cluster, now
on this machine, or over simulated days."""

import os
from typing import Annotated

import typer

from workflows.cli.options import ConfigOption, SetOption, console, load
from workflows.compiler import compile_manifests
from workflows.config import DEFAULT_CONFIG

app = typer.Typer(
    no_args_is_help=True, help="Scheduled retraining: apply the CronWorkflow, run or simulate it."
)


@app.command("apply")
def schedule_apply(config: ConfigOption = DEFAULT_CONFIG, set_: SetOption = None) -> None:
    """Create or update the retraining CronWorkflow on the Argo server (argo.server)."""
    from workflows.argo_client import ArgoClient, argo_settings

    loaded = load(config, set_)
    cron = compile_manifests(loaded).cron
    with ArgoClient(argo_settings(loaded, os.environ)) as client:
        applied = client.apply_cron(cron)
    schedule = loaded.pipeline.schedule
    console.print(
        f"{applied} CronWorkflow {cron['metadata']['name']} in namespace "
        f"{loaded.pipeline.argo.namespace}: {', '.join(schedule.schedules)} ({schedule.timezone})",
        highlight=False,
    )


@app.command("run-once")
def schedule_run_once(
    config: ConfigOption = DEFAULT_CONFIG,
    data: Annotated[
        str | None, typer.Option("--data", help="Data a retraining trains on (data.uri).")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option("--window", help="Data the drift check judges (default: the data)."),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Run the CronWorkflow's workflow now, on this machine: the drift check, then training
    only if it calls for it."""
    from workflows.schedule import run_once

    overrides = list(set_ or [])
    if window is not None:
        overrides.append(f"drift.window_uri={window}")
    raise typer.Exit(run_once(load(config, overrides, data), console))


@app.command("simulate")
def schedule_simulate(
    days: Annotated[int, typer.Option("--days", min=1, help="Days after day 0.")] = 60,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            help="DAY:KIND[=ARGUMENT], KIND covariate (FEATURE=STRENGTH), category "
            "(FEATURE=VALUE:SHARE), concept (STRENGTH), corrupt or outage (repeatable). "
            "Default: covariate day 10, category 25, concept 40, corrupt 50, outage 55 "
            "(those within --days).",
        ),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", min=100, help="Rows per day.")] = 5000,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Boosting rounds.")] = 20,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    config: ConfigOption = DEFAULT_CONFIG,
    set_: SetOption = None,
) -> None:
    """Feed a synthetic stream with events through the scheduled run, day by day; print each
    day, then the days against an oracle retrained daily and the loop's summary. Exit 1 when
    a target is missed."""
    from workflows.simulate import DEFAULT_EVENTS, Event, Scenario, simulate

    loaded = load(config, set_)
    if event:
        events = tuple(Event.parse(text) for text in event)
    else:
        events = tuple(e for e in DEFAULT_EVENTS if e.day <= days)
    scenario = Scenario(days=days, events=events, rows=rows, rounds=rounds, seed=seed)
    _, summary = simulate(loaded, scenario, console)
    raise typer.Exit(0 if all(summary.targets.values()) else 1)
