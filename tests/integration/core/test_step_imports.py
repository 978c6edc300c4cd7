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
        f"import json, sys, steps.__main__; steps.__main__.keep_out({step!r}); "
        f"import {STEPS[step].module}; "
        f"print(json.dumps([m for m in {libraries!r} if sys.modules.get(m) is not None]))"
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


@pytest.mark.parametrize("step", ["tracker", "train"])
def test_a_training_process_runs_xgboost_without_scikit_learn(step: str) -> None:
    # The training integration tests run both through `python -m steps`, with sklearn kept out.
    assert "sklearn" in STEPS[step].kept_out
    assert loaded(step, ["xgboost", "sklearn"]) == ["xgboost"]


def test_a_library_kept_out_fails_to_import() -> None:
    probe = (
        "import steps.__main__; steps.__main__.keep_out('train')\n"
        "try:\n    import sklearn\nexcept ImportError:\n    print('kept out')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "kept out"
