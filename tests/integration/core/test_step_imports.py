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
SCORING = ["evaluate", "model-card", "deploy"]
"""Steps that score with the ONNX model or report on it: no training library, and no
scipy.stats (only the drift step's tests need it; it takes ~0.4 s to import)."""
NOT_SCORING = ["xgboost", "sklearn", "great_expectations", "scipy.stats"]


def loaded(step: str, libraries: list[str]) -> list[str]:
    """Which of `libraries` importing the step loads, as `python -m steps <step>` imports it:
    the command's module, then the step's."""
    probe = (
        f"import json, sys, steps.__main__, {STEPS[step].module}; "
        f"print(json.dumps([m for m in {libraries!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    found: list[str] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("step", LIGHT)
def test_a_light_step_loads_no_heavy_library(step: str) -> None:
    assert loaded(step, HEAVY) == [], f"{step} loads these"


@pytest.mark.parametrize("step", SCORING)
def test_a_scoring_step_loads_no_training_or_test_library(step: str) -> None:
    assert loaded(step, NOT_SCORING) == [], f"{step} loads these"
