"""`python -m steps <name> [args]`: the command inside every workflow container.

Each step module exposes `cli(argv) -> int`; modules are imported lazily so a step pays
only for its own libraries. A StepError becomes one line on stderr and its exit code.
"""

import importlib
import sys

from steps.core.errors import StepError
from steps.core.names import Step

MODULES: dict[Step, str] = {
    Step.SYNTH: "steps.data.synth",
    Step.AUDIT: "steps.audit.step",
    Step.PROVENANCE: "steps.provenance.step",
    Step.TRACKER: "steps.train.tracker",
    Step.TRAIN: "steps.train.worker",
    Step.MODEL_CHECK: "steps.train.model_check",
    Step.QUANTIZE: "steps.quantize.step",
    Step.EVALUATE: "steps.evaluate.step",
    Step.DEPLOY: "steps.deploy.step",
    Step.SUMMARY: "steps.summary.step",
    Step.DRIFT: "steps.drift.step",
    Step.CHAIN: "steps.provenance.chain",
    Step.INIT: "steps.data.init",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {s.value for s in Step}:
        names = ", ".join(s.value for s in Step)
        print(f"usage: python -m steps <step> [args]; steps: {names}", file=sys.stderr)
        return 2
    module = importlib.import_module(MODULES[Step(argv[0])])
    try:
        code: int = module.cli(argv[1:])
    except StepError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
