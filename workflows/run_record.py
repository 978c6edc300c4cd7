"""A local run's record on disk, and fetching what it produced from the bucket.

`mlpipe run` writes `run.json` beside the run's journal: every node with its phase and the
keys of its artifacts and logs, failed nodes included (a failed gate's report is the one a
user wants first). `mlpipe reports` and `mlpipe artifacts get` read it back, so a user opens a
report with one command instead of starting the store and calling boto3.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from steps.core.errors import BadInput
from steps.core.store import ArtifactStore
from workflows.engine import NodeKind, RunResult

RECORD_FILE = "run.json"
REPORT_SUFFIXES = (".html",)
SUMMARY_NAMES = ("run-summary.json",)
"""Besides every HTML report, the onExit run summary a machine reads."""


@dataclass(frozen=True)
class NodeRecord:
    path: str
    template: str
    phase: str
    artifacts: dict[str, str]
    """Output artifact name -> key (a prefix for a folder stored without archive)."""
    logs: list[str]
    parameters: dict[str, str]
    seconds: float | None


@dataclass(frozen=True)
class RunRecord:
    name: str
    phase: str
    bucket: str
    nodes: list[NodeRecord]


def save_record(run_dir: Path, result: RunResult) -> Path:
    """Write `run.json` for a finished run under `run_dir/<workflow name>/`."""
    nodes = [
        {
            "path": node.path,
            "template": node.template,
            "phase": node.phase.value,
            "artifacts": dict(node.artifacts),
            "logs": list(node.log_keys),
            "parameters": dict(node.parameters),
            "seconds": node.duration,
        }
        for node in result.nodes
        if node.kind is NodeKind.POD
    ]
    record = {"name": result.name, "phase": result.phase.value, "bucket": result.bucket}
    path = run_dir / result.name / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**record, "nodes": nodes}, indent=1))
    tmp.replace(path)
    return path


def load_record(workdir: Path, run: str) -> RunRecord:
    """The record of the run named `run` under the engine's workdir; BadInput naming what
    runs there are when there is none."""
    found = sorted(workdir.glob(f"*/{run}/{RECORD_FILE}"))
    if not found:
        known = sorted({p.parent.name for p in workdir.glob(f"*/*/{RECORD_FILE}")})
        hint = f"finished runs: {', '.join(known[-5:])}" if known else "no finished runs"
        raise BadInput(f"no finished run named {run!r} under {workdir} ({hint})")
    data = json.loads(found[-1].read_text())
    nodes = [NodeRecord(**node) for node in data["nodes"]]
    return RunRecord(data["name"], data["phase"], data["bucket"], nodes)


def fetch_reports(store: ArtifactStore, record: RunRecord, out: Path) -> list[Path]:
    """Download the run's HTML reports and its summary JSON to `out/<node>/<file>`."""
    fetched = []
    for node in record.nodes:
        for key in node.artifacts.values():
            name = key.rsplit("/", 1)[-1]
            if name.endswith(REPORT_SUFFIXES) or name in SUMMARY_NAMES:
                target = out / _folder(node.path) / name
                store.download_file(key, target)
                fetched.append(target)
    return fetched


def fetch_artifact(
    store: ArtifactStore, record: RunRecord, step: str, artifact: str, out: Path
) -> Path:
    """Download one output artifact of one step (a file, or a folder's files) to `out`."""
    node = _node(record, step)
    if artifact not in node.artifacts:
        known = ", ".join(sorted(node.artifacts)) or "none"
        raise BadInput(f"step {node.path!r} of {record.name} has no artifact {artifact!r}: {known}")
    key = node.artifacts[artifact]
    if store.exists(key):
        store.download_file(key, out)
    else:
        store.download_dir(key.rstrip("/") + "/", out)
    return out


def _node(record: RunRecord, step: str) -> NodeRecord:
    """The node a user means by `step`: its exact path, else the one node of that template."""
    exact = [node for node in record.nodes if node.path == step]
    matches = exact or [node for node in record.nodes if node.template == step]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(node.path for node in record.nodes)
        raise BadInput(f"run {record.name} has no step {step!r}; its steps: {known}")
    paths = ", ".join(node.path for node in matches)
    raise BadInput(f"step {step!r} ran {len(matches)} times in {record.name}; pick one: {paths}")


def _folder(path: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path)
