"""Failures meant for the user, each with the exit code the process ends with.

Exit codes: 0 success, 1 a gate failed (the data or model is not good enough, or the
pipeline failed), 2 bad input (missing file, bad spec or config, wrong column), 3
infrastructure (storage or cluster unreachable). A step (`python -m steps`) and the `mlpipe`
command each print one of these as a single `error: ...` line, never a traceback.
"""


class MlpipeError(Exception):
    """The base of every failure mlpipe reports: its message and its exit code."""

    exit_code = 1


class GateFailed(MlpipeError):
    """The step ran fine and found the data or model not good enough to go on."""

    exit_code = 1


class BadInput(MlpipeError):
    """The step was given something it cannot use: it names what and where."""

    exit_code = 2


class StorageError(MlpipeError):
    """The artifact store could not be reached or did not hold what was expected."""

    exit_code = 3


class ClusterError(MlpipeError):
    """The Kubernetes API could not be reached, refused a call, or a rollout never became
    ready: infrastructure, like storage."""

    exit_code = 3
