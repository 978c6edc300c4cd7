"""`retryStrategy`: how many attempts, which failures are retried, and how long to wait."""

import re
from dataclasses import dataclass

from workflows.engine.errors import ManifestError
from workflows.engine.result import NodePhase

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_RETRIED: dict[str, frozenset[NodePhase]] = {
    "Always": frozenset({NodePhase.FAILED, NodePhase.ERROR}),
    "OnFailure": frozenset({NodePhase.FAILED}),
    "OnError": frozenset({NodePhase.ERROR}),
}


def parse_duration(value: int | str, where: str) -> float:
    """Seconds from an Argo duration: an integer (seconds) or Go's "1m30s", "500ms", "2h"."""
    if isinstance(value, int):
        return float(value)
    text = value.strip()
    if text.isdigit():
        return float(text)
    position = 0
    seconds = 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ManifestError(f"{where}: {value!r} is not a duration (e.g. 30s, 2m, 1h30m)")
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text:
        raise ManifestError(f"{where}: empty duration")
    return seconds


def parse_count(value: int | str, where: str) -> int:
    """An int-or-string count after substitution (retry limits, sequence bounds)."""
    if isinstance(value, int):
        return value
    try:
        return int(value.strip())
    except ValueError:
        raise ManifestError(f"{where}: {value!r} is not an integer") from None


@dataclass(frozen=True)
class RetryPlan:
    """A resolved retryStrategy: `limit` retries after the first attempt."""

    limit: int
    policy: str = "OnFailure"
    duration: float = 0.0
    factor: float = 1.0
    max_duration: float | None = None

    def retries(self, phase: NodePhase) -> bool:
        return phase in _RETRIED[self.policy]

    def delay(self, retry: int) -> float:
        """Wait before retry number `retry` (1-based): duration * factor^(retry-1), like Argo."""
        return self.duration * self.factor ** (retry - 1)

    def within_budget(self, elapsed: float, delay: float) -> bool:
        """Argo stops retrying once the next attempt would start after maxDuration."""
        return self.max_duration is None or elapsed + delay <= self.max_duration
