"""The command line's side of inference (`mlpipe init`, `mlpipe run --label`): it runs
`python -m steps init` (the CLI never runs step code in-process) and says where its files are.

`mlpipe run --data FILE --label COLUMN` infers into `.mlpipe/inferred/<key>/` (beside the
engine's run folders), then loads the config with those files as a layer between the config
file and `--set` (workflows/config.py), so a user's `--set` still wins over an inference.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

from steps.core.names import InitFile, Step
from workflows.config import PipelineConfig

INFERRED_DIR = "inferred"


def run_init(
    data: str,
    label: str,
    positive_class: str | None,
    out: Path | None,
    *,
    force: bool = False,
    command: str = "mlpipe init",
    quiet: bool = False,
) -> int:
    """`python -m steps init`; its exit code (it prints its own one-line error)."""
    args = [sys.executable, "-m", "steps", Step.INIT.value, "--data", data, "--label", label]
    args += ["--command", command]
    if positive_class is not None:
        args += ["--positive-class", positive_class]
    if out is not None:
        args += ["--out", str(out)]
    if force:
        args.append("--force")
    stdout = subprocess.DEVNULL if quiet else None
    return subprocess.run(args, check=False, stdout=stdout).returncode


def inferred_folder(pipeline: PipelineConfig, data: str, label: str, positive: str | None) -> Path:
    """Where `mlpipe run --label` keeps what it inferred: one folder per file and label."""
    key = f"{Path(data).absolute()}\0{label}\0{positive}".encode()
    return pipeline.engine.workdir.parent / INFERRED_DIR / hashlib.sha256(key).hexdigest()[:16]


def inferred_config(folder: Path) -> Path:
    return folder / InitFile.CONFIG.value
