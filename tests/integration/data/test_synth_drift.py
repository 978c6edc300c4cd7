"""Drifted windows from the synthetic generator: each kind of drift changes what it claims
to change and nothing else, through the library, the step CLI and `mlpipe data synth`."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.data.synth import ChurnParams, generate


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def test_mlpipe_data_synth_writes_a_drifted_window(tmp_path: Path) -> None:
    out = tmp_path / "window.parquet"
    result = run(
        "-m", "workflows.cli", "data", "synth", "--rows", "3000", "--seed", "2", "--out", str(out),
        "--covariate-drift", "age=1", "--covariate-drift", "region=2",
        "--new-category", "plan=ultra:0.2", "--concept-drift", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = generate(
        3000,
        seed=2,
        params=ChurnParams(
            covariate_drift=(("age", 1.0), ("region", 2.0)),
            new_categories=(("plan", "ultra", 0.2),),
            concept_drift=0.5,
        ),
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert np.isclose((expected["plan"] == "ultra").mean(), 0.2, atol=0.03)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--covariate-drift", "age"], "expected FEATURE=STRENGTH"),
        (["--covariate-drift", "age=lots"], "expected FEATURE=STRENGTH"),
        (["--new-category", "plan=ultra"], "expected FEATURE=VALUE:SHARE"),
        (["--new-category", "height=x:0.1"], "categorical features are"),
    ],
)
def test_the_step_refuses_malformed_drift_options(
    tmp_path: Path, option: list[str], message: str
) -> None:
    out = tmp_path / "w.parquet"
    result = run("-m", "steps", "synth", "--rows", "10", "--out", str(out), *option)
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists()
