"""The two commands as a user or a workflow container runs them: in a subprocess, with this
process's environment plus what a test adds, output captured, never hanging."""

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.paths import ROOT


def run_step(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m steps <args>`, as a workflow container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "steps", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def mlpipe(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 600,
    columns: int = 200,
) -> subprocess.CompletedProcess[str]:
    """The `mlpipe` command; `columns` is the terminal width its tables wrap at."""
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": str(columns), **(env or {})},
        check=False,
        timeout=timeout,
    )
