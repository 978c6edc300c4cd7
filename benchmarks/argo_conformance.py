"""Conformance with Argo's own examples: every example Argo's e2e suite runs, run locally.

Argo's `test/e2e/examples_test.go` walks `examples/` (every .yaml/.yml/.json file), applies
the ConfigMaps, WorkflowTemplates and ClusterWorkflowTemplates it finds, then submits every
Workflow document without the `workflows.argoproj.io/no-test` label and expects it to
Succeed (103 at v4.1.2). This script does the same against the local engine, one example
in a pool of threads (a hung example is stopped after --timeout seconds), with one embedded S3
server as the artifact repository, and prints per example `succeeded`, `failed (why)` or
`refused (the feature or rule)`, then the refusals grouped by reason, then
`ratio=<share succeeded, Argo's expected result>` last.

    .venv/bin/python benchmarks/argo_conformance.py --examples DIR [--filesystem remap]

DIR is Argo's examples/ folder (e.g. from a checkout of argoproj/argo-workflows v4.1.2);
nothing of it is kept in this repository.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from workflows.engine import EngineContext

NO_TEST_LABEL = "workflows.argoproj.io/no-test"
APPLIED_KINDS = ("ConfigMap", "WorkflowTemplate", "ClusterWorkflowTemplate")
"""What examples_test.go applies before submitting (PersistentVolumeClaims too: refused here)."""
SUFFIXES = (".yaml", ".yml", ".json")
FILESYSTEM_NEEDS = (
    ("dnsConfig", "spec.dnsConfig"),
    ("workingDir", "a workingDir outside every volumeMount"),
    ("is not under a volumeMount", "a declared path outside every volumeMount"),
    ("inside its text", "a mount path inside a command's or script's text"),
    ("", "other"),
)
"""(marker in the first problem remap_refusals names, how it is grouped): the last matches all."""


def documents(root: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in SUFFIXES:
            continue
        try:
            loaded = list(yaml.safe_load_all(path.read_text()))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # examples_test.go skips what does not parse as a manifest
        for index, document in enumerate(loaded):
            if isinstance(document, dict):
                yield path, index, document


def examples(root: Path) -> list[tuple[str, int]]:
    """(file, document index) of each Workflow the e2e suite expects to succeed."""
    found = []
    for path, index, document in documents(root):
        labels = (document.get("metadata") or {}).get("labels") or {}
        if document.get("kind") == "Workflow" and NO_TEST_LABEL not in labels:
            found.append((str(path.relative_to(root)), index))
    return found


def library(root: Path) -> dict[str, list[dict[str, Any]]]:
    applied: dict[str, list[dict[str, Any]]] = {kind: [] for kind in APPLIED_KINDS}
    for _, _, document in documents(root):
        if document.get("kind") in APPLIED_KINDS:
            applied[str(document["kind"])].append(document)
    return applied


def run_one(
    workflow: dict[str, Any],
    applied: dict[str, list[dict[str, Any]]],
    ctx: "EngineContext",
    timeout: float,
) -> dict[str, str]:
    """Run one example; its verdict. The timeout is an activeDeadlineSeconds the harness adds
    when the example sets none, so a hung example ends like a deadline on a cluster."""
    from workflows.engine import ManifestError, run_workflow

    templates = {}
    for document in applied["WorkflowTemplate"] + applied["ClusterWorkflowTemplate"]:
        cluster = document["kind"] == "ClusterWorkflowTemplate"
        key = ("cluster:" if cluster else "") + str(document["metadata"]["name"])
        templates[key] = document
    spec = workflow.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("activeDeadlineSeconds", int(timeout))
    try:
        result = run_workflow(workflow, templates, ctx)
    except ManifestError as error:
        return {"verdict": "refused", "why": str(error)}
    except Exception as error:
        return {"verdict": "failed", "why": f"engine crashed: {type(error).__name__}: {error}"}
    if result.succeeded:
        return {"verdict": "succeeded", "why": ""}
    return {"verdict": "failed", "why": f"{result.phase.value}: {result.message}"}


def reason(why: str) -> str:
    """The refusal's feature or rule, for grouping: its last `: ` part of the first line."""
    lines = [line.strip() for line in why.splitlines() if line.strip()]
    if "needs each task's own filesystem" in lines[0] and len(lines) > 1:
        return "needs each task's own filesystem: " + next(
            kind for marker, kind in FILESYSTEM_NEEDS if marker in lines[1]
        )
    if len(lines) > 1 and lines[0].startswith("Argo v4 would reject"):
        return "Argo's rules: " + lines[1].split(": ", 2)[-1]
    if len(lines) > 1:
        return lines[0].split(" (", 1)[0].split(": ")[-1] + ": " + lines[1].split(": ")[-1]
    return lines[0].split(": ")[-1] if lines else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=Path, required=True, help="Argo's examples/ folder")
    parser.add_argument("--filesystem", default="auto", choices=["auto", "isolated", "remap"])
    parser.add_argument("--timeout", type=int, default=120, help="seconds per example")
    parser.add_argument("--jobs", type=int, default=2, help="examples run at once")
    args = parser.parse_args()
    root = args.examples.resolve()
    if not root.is_dir():
        raise SystemExit(f"--examples {root}: not a folder")
    from steps.core.store import ArtifactStore
    from workflows.engine import EngineContext
    from workflows.engine.filesystem import FilesystemMode
    from workflows.s3server import EmbeddedS3

    found = examples(root)
    applied = library(root)
    config_maps = {
        str(d["metadata"]["name"]): {str(k): str(v) for k, v in (d.get("data") or {}).items()}
        for d in applied["ConfigMap"]
    }
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="argo-conformance-") as tmp,
        EmbeddedS3(Path(tmp) / "s3") as server,
    ):
        store = ArtifactStore(
            server.endpoint,
            f"conformance-{uuid.uuid4().hex[:8]}",
            server.access_key,
            server.secret_key,
        )
        store.ensure_bucket()
        ctx = EngineContext(
            store=store,
            key_format="{{workflow.name}}/{{pod.name}}",
            workdir=Path(tmp) / "runs",
            parallelism=4,
            env=dict(os.environ),
            secrets={},
            stop_grace_seconds=2.0,
            config_maps=config_maps,
            filesystem=FilesystemMode(args.filesystem),
        )

        def run(example: tuple[str, int]) -> dict[str, str]:
            name, index = example
            workflow = list(yaml.safe_load_all((root / name).read_text()))[index]
            verdict = run_one(workflow, applied, ctx, args.timeout)
            print(f"  ... {name}: {verdict['verdict']}", file=sys.stderr, flush=True)
            return verdict

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            verdicts = list(pool.map(run, found))
    report(found, verdicts, args.filesystem, time.monotonic() - started)


def report(
    found: list[tuple[str, int]], verdicts: list[dict[str, str]], filesystem: str, seconds: float
) -> None:
    counts: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    for (name, index), verdict in zip(found, verdicts, strict=True):
        label = name if index == 0 else f"{name}#{index}"
        kind = verdict["verdict"]
        counts[kind] += 1
        why = verdict["why"]
        if kind == "refused":
            refusals[reason(why)] += 1
            print(f"{label}: refused ({reason(why)})")
        elif kind == "failed":
            print(f"{label}: failed ({why.splitlines()[0][:160] if why else '?'})")
        else:
            print(f"{label}: succeeded")
    print()
    print(f"refusals by reason ({counts['refused']}):")
    for why, count in refusals.most_common():
        print(f"  {count:3d}  {why}")
    total = len(found)
    print(
        f"\n{total} examples (Argo expects every one to succeed): {counts['succeeded']} "
        f"succeeded, {counts['failed']} failed, {counts['refused']} refused; "
        f"filesystem={filesystem}; {seconds:.0f}s"
    )
    print(f"ratio={counts['succeeded'] / total:.3f}" if total else "ratio=0")


if __name__ == "__main__":
    main()
