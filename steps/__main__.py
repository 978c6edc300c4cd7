"""`python -m steps <name> [args]`: the command inside every workflow container.

The steps are those of the registry (steps/core/registry.py); each step's module is imported
only when it runs, so a step pays only for its own libraries. A failure it reports
(MlpipeError) becomes one line on stderr and its exit code.
"""

import sys

from steps.core.errors import MlpipeError
from steps.core.harness import run
from steps.core.registry import STEPS


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STEPS:
        print(f"usage: python -m steps <step> [args]; steps: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    try:
        return run(STEPS[argv[0]], argv[1:])
    except MlpipeError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code


def keep_out(step: str) -> None:
    """Make the step's `kept_out` libraries fail to import in this process (Python's own
    rule for a None entry in sys.modules); one already imported stays. Only for a process of
    one step: anything importing them later in the same process would fail too."""
    for library in STEPS[step].kept_out if step in STEPS else ():
        sys.modules.setdefault(library, None)  # type: ignore[arg-type]


if __name__ == "__main__":
    keep_out(sys.argv[1] if len(sys.argv) > 1 else "")
    sys.exit(main(sys.argv[1:]))
