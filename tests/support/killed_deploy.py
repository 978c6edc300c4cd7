"""A deploy step that SIGKILLs itself at one boundary of its promotion: the target of the
process tests/integration/deploy/test_promotion.py spawns. Its own module, so the spawned
interpreter imports the deploy step and nothing of the test suite."""

import os
import signal
from pathlib import Path

from steps.core.specs import DeploySpec
from steps.core.store import ArtifactStore
from steps.deploy.promotion import Phase
from steps.deploy.step import deploy
from steps.evaluate.expectation import ScoreExpectation


def deploy_until(
    env: dict[str, str], spec: str, model: list[str], expected: str, phase: str
) -> None:
    """Deploy `model` (onnx, digest, bundle, dataset URI, progress file) as the model
    `churn` with the evaluated `expected` scores; SIGKILL at `phase` (one no Phase has:
    never)."""
    os.environ.update(env)
    store = ArtifactStore.from_env(os.environ)

    def die(reached: Phase) -> None:
        if reached == phase:
            os.kill(os.getpid(), signal.SIGKILL)

    onnx, digest, bundle, dataset_uri, progress = model
    deploy(
        store, Path(onnx), digest, Path(bundle), dataset_uri, "churn",
        DeploySpec.model_validate_json(spec), progress_file=Path(progress), on_phase=die,
        expected=ScoreExpectation.model_validate_json(expected),
    )  # fmt: skip
