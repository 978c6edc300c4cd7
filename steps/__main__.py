"""`python -m steps <name> [args]`: the command inside every workflow container.

Each step module exposes `cli(argv) -> int`; modules are imported lazily so a step pays
only for its own libraries. A StepError becomes one line on stderr and its exit code.
"""

import importlib
import sys

from steps.errors import StepError
from steps.names import Step

MODULES: dict[Step, str] = {
    Step.SYNTH: "steps.synth",
    Step.AUDIT: "steps.audit",
    Step.PROVENANCE: "steps.provenance",
    Step.TRACKER: "steps.tracker",
    Step.TRAIN: "steps.train",
    Step.MODEL_CHECK: "steps.model_check",
    Step.QUANTIZE: "steps.quantize",
    Step.EVALUATE: "steps.evaluate",
    Step.DEPLOY: "steps.deploy",
    Step.SUMMARY: "steps.summary",
    Step.DRIFT: "steps.drift",
    Step.CHAIN: "steps.chain",
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
