"""A step process loads only the libraries it uses: a pipeline run starts ~10 step processes,
each paying its imports, and XGBoost alone brings in scikit-learn and pandas."""

import json
import subprocess
import sys

import pytest

from steps.core.registry import STEPS

HEAVY = ["xgboost", "sklearn", "pandas", "onnxruntime", "great_expectations"]
LIGHT = ["model-check", "summary", "chain"]
"""Steps that read and write JSON and small files only: none of HEAVY is theirs to load."""


@pytest.mark.parametrize("step", LIGHT)
def test_a_light_step_loads_no_heavy_library(step: str) -> None:
    """Imported as `python -m steps <step>` imports it: the command's module, then the step's."""
    probe = (
        f"import json, sys, steps.__main__, {STEPS[step].module}; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [], f"{step} loads {done.stdout.strip()}"
