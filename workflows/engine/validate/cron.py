"""Rules of a CronWorkflow's own fields (validate.go: CronWorkflow): name length, at least
one schedule, each one a standard cron expression (robfig/cron's ParseStandard), a known
timezone and concurrencyPolicy, and a non-negative startingDeadlineSeconds.

The schedule parser is ours: robfig/cron's five-field grammar with its descriptors
(`@daily`, `@every 1h30m`) and an optional `CRON_TZ=`/`TZ=` prefix. No Python package
implements exactly that grammar (croniter accepts six fields and other extensions).
"""

import re
import zoneinfo
from collections.abc import Iterator, Mapping
from typing import Any

from workflows.engine.validate.names import MAX_CRON_NAME
from workflows.engine.validate.problem import text

Found = Iterator[tuple[str, str]]

CONCURRENCY_POLICIES = frozenset({"Allow", "Forbid", "Replace", ""})
DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: index + 1 for index, name in enumerate(MONTHS)}),
    ("day of week", 0, 6, {name: index for index, name in enumerate(DAYS)}),
)
_DURATION = re.compile(r"(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def schedule_error(schedule: str) -> str | None:
    """Why robfig/cron's ParseStandard would refuse `schedule`, or None."""
    spec = schedule.strip()
    if spec.startswith(("CRON_TZ=", "TZ=")):
        zone, _, spec = spec.partition(" ")
        if _timezone_error(zone.split("=", 1)[1]):
            return f"provided bad location {zone.split('=', 1)[1]}"
        spec = spec.strip()
    if spec.startswith("@every "):
        duration = spec.removeprefix("@every ").strip()
        if not re.fullmatch(f"(?:{_DURATION.pattern})+", duration):
            return f"failed to parse duration {spec}"
        return None
    if spec.startswith("@"):
        return None if spec in DESCRIPTORS else f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != len(FIELDS):
        return f"expected exactly 5 fields, found {len(fields)}: {fields}"
    for value, (name, low, high, names) in zip(fields, FIELDS, strict=True):
        error = _field_error(value, name, low, high, names)
        if error:
            return error
    return None


def _field_error(
    value: str, name: str, low: int, high: int, names: Mapping[str, int]
) -> str | None:
    for part in value.split(","):
        if part == "?" and name in ("day of month", "day of week"):
            continue
        range_part, _, step = part.partition("/")
        if step and not step.isdigit():
            return f"failed to parse int from {step}"
        if step and int(step) == 0:
            return f"step of range should be a positive number: {part}"
        if range_part == "*":
            continue
        bounds = range_part.split("-")
        if len(bounds) > 2:
            return f"too many hyphens: {part}"
        numbers = []
        for bound in bounds:
            number = names.get(bound.upper()) if not bound.isdigit() else int(bound)
            if number is None:
                return f"failed to parse int from {bound}"
            numbers.append(number)
        if numbers[0] < low or numbers[-1] > high:
            return f"{name} value out of range ({low}-{high}): {part}"
        if numbers[0] > numbers[-1]:
            return f"beginning of range ({numbers[0]}) beyond end of range ({numbers[-1]}): {part}"
    return None


def _timezone_error(zone: str) -> bool:
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return True
    return False


def cron_problems(name: str, spec: Mapping[str, Any]) -> Found:
    """(path, message) per broken CronWorkflow rule (its workflowSpec is checked as a Workflow)."""
    if len(name) > MAX_CRON_NAME:
        yield (
            "metadata.name",
            f"cron workflow name {name!r} must not be more than {MAX_CRON_NAME} characters long "
            f"(currently {len(name)})",
        )
    schedules = spec.get("schedules")
    if not isinstance(schedules, list) or not schedules:
        yield "spec.schedules", "cron workflow must have at least one schedule"
        schedules = []
    for index, schedule in enumerate(schedules):
        error = schedule_error(text(schedule))
        if error:
            yield (
                f"spec.schedules[{index}]",
                f"cron schedule {text(schedule)} is malformed: {error}",
            )
    timezone = text(spec.get("timezone"))
    if timezone and _timezone_error(timezone):
        yield "spec.timezone", f"invalid timezone {timezone!r}"
    policy = text(spec.get("concurrencyPolicy"))
    if policy not in CONCURRENCY_POLICIES:
        yield "spec.concurrencyPolicy", f"'{policy}' is not a valid concurrencyPolicy"
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int) and deadline < 0:
        yield "spec.startingDeadlineSeconds", "startingDeadlineSeconds must be positive"
