"""The audit tests' common ground: the sample data's spec, the shipped suite, and the
built-in checks' failures as a test reads them."""

import json
from pathlib import Path
from typing import Any

import pandas as pd

from steps.audit.checks import Reference, builtin_checks
from steps.core.specs import AuditSpec
from steps.data.dataset import read_table
from steps.data.synth import data_spec
from tests.support.paths import SUITE_FILE

DATA = data_spec()
SUITE: dict[str, Any] = json.loads(SUITE_FILE.read_text())
AUDIT = AuditSpec(suite=SUITE, min_rows=100)


def as_read(frame: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """`frame` as the audit reads it from a Parquet file."""
    frame.to_parquet(tmp / "d.parquet", index=False)
    return read_table(str(tmp / "d.parquet"), DATA, None)


def failures(frame: pd.DataFrame, reference: Reference | None = None) -> dict[str, list[str]]:
    """Failed built-in checks: name -> descriptions."""
    found: dict[str, list[str]] = {}
    for check in builtin_checks(frame, DATA, AUDIT, reference):
        if not check.passed:
            found.setdefault(check.name, []).append(check.describe())
    return found
