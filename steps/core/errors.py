"""Failures a step reports to its caller, each with the exit code the workflow sees.

Exit codes: 0 success, 1 a gate failed (the data or model is not good enough),
2 bad input (missing file, bad spec, wrong column), 3 infrastructure (storage unreachable).
"""


class StepError(Exception):
    """A failure with a message meant for the user; `python -m steps` prints it, no traceback."""

    exit_code = 1


class GateFailed(StepError):
    """The step ran fine and found the data or model not good enough to go on."""

    exit_code = 1


class BadInput(StepError):
    """The step was given something it cannot use: it names what and where."""

    exit_code = 2


class StorageError(StepError):
    """The artifact store could not be reached or did not hold what was expected."""

    exit_code = 3


class ClusterError(StepError):
    """The Kubernetes API could not be reached, refused a call, or a rollout never became
    ready: infrastructure, like storage."""

    exit_code = 3
