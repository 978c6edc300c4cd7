"""The synthetic churn data: deterministic, shaped like the contract says, learnable but noisy."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.data.synth import generate
from tests.support.commands import run_step


def test_cli_writes_the_same_rows_as_parquet_and_csv(tmp_path: Path) -> None:
    for name in ["d.parquet", "d.csv"]:
        result = run_step(
            ["synth", "--rows", "400", "--seed", "5", "--out", str(tmp_path / name)],
            dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
    from_parquet = pd.read_parquet(tmp_path / "d.parquet")
    from_csv = pd.read_csv(tmp_path / "d.csv")
    pd.testing.assert_frame_equal(from_parquet, generate(400, seed=5))
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
    assert not np.array_equal(from_parquet["usage_gb"], generate(400, seed=6)["usage_gb"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "10", "--out", "{tmp}/d.json"], "extension must be .parquet or .csv"),
        (["--rows", "0", "--out", "{tmp}/d.parquet"], "--rows must be at least 1"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_step(["synth", *[a.format(tmp=tmp_path) for a in args]], dict(os.environ))
    assert result.returncode == 2
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []
