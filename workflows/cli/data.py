"""`mlpipe data synth`: the synthetic churn dataset, drifted if asked."""

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from steps.core.registry import SYNTH

app = typer.Typer(no_args_is_help=True, help="Datasets: synthetic sample data.")

CovariateDriftOption = Annotated[
    list[str] | None,
    typer.Option(
        "--covariate-drift",
        metavar="FEATURE=STRENGTH",
        help="Move a numeric feature by STRENGTH standard deviations, or tilt a categorical "
        "one's mix (repeatable); labels keep their relation to the features.",
    ),
]
NewCategoryOption = Annotated[
    list[str] | None,
    typer.Option(
        "--new-category",
        metavar="FEATURE=VALUE:SHARE",
        help="Give SHARE of the rows a category training never saw (repeatable).",
    ),
]
ConceptDriftOption = Annotated[
    float,
    typer.Option(
        "--concept-drift",
        min=0.0,
        max=1.0,
        help="0-1: how far the label's relation to the features turns (0.5 cancels it).",
    ),
]


@app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    rows: Annotated[int, typer.Option("--rows", min=1)] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    covariate_drift: CovariateDriftOption = None,
    new_category: NewCategoryOption = None,
    concept_drift: ConceptDriftOption = 0.0,
) -> None:
    """Write the synthetic churn dataset (deterministic for a seed), drifted if asked."""
    from workflows.simulate import drift_arguments

    # The generator is a step (`python -m steps synth`): the CLI never runs step code in-process.
    command = [sys.executable, "-m", "steps", SYNTH.name.value]
    command += ["--rows", str(rows), "--out", str(out), "--seed", str(seed)]
    command += drift_arguments(covariate_drift or [], new_category or [], concept_drift)
    raise typer.Exit(subprocess.run(command, check=False).returncode)
