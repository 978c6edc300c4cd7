"""Reusing a finished node's outputs instead of running it again: resume and memoization.

Resume: every node that succeeds is written to the run's journal (`<run dir>/journal.json`)
after its outputs are uploaded, by an atomic rename, so a journal never names a node whose
artifacts are not all stored. `run_workflow(..., resume=NAME)` reads it back and skips those
nodes. Nodes inside a DAG template with a retryStrategy are reused only with their DAG: such
a DAG retries as one unit (a tracker and its workers), and so it resumes as one.

Memoization: Argo's `memoize` caches a node's outputs in a ConfigMap under a key computed from
its inputs; locally the same entry is an object in the artifact bucket,
`memo/<configMap name>/<key>.json`. A hit younger than `maxAge` whose artifacts still exist
replaces running the node; a miss runs it and saves the entry once it succeeded.
"""

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steps.core.errors import StorageError
from steps.core.store import ArtifactStore
from workflows.engine.artifacts import ArtifactRef, Packing
from workflows.engine.errors import ManifestError
from workflows.engine.model import Memoize
from workflows.engine.result import NodePhase
from workflows.engine.retry import parse_duration
from workflows.engine.runtime import Identity, Outcome, TaskError
from workflows.engine.variables import Scope, substitute

JOURNAL_FILE = "journal.json"
MEMO_PREFIX = "memo"
CACHE_KEY = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
"""What Argo accepts as a cache key (it is a ConfigMap data key)."""
MEMOIZED = "memoized"
RESUMED = "resumed"


def outputs_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "parameters": dict(outcome.parameters),
        "artifacts": {
            name: {
                "key": ref.key,
                "packing": ref.packing.value,
                "is_dir": ref.is_dir,
                "raw": ref.raw,
                "sub_path": ref.sub_path,
            }
            for name, ref in outcome.artifacts.items()
        },
        "result": outcome.result,
    }


def outcome_from_json(value: Mapping[str, Any], message: str) -> Outcome:
    artifacts = {
        name: ArtifactRef(
            str(ref["key"]),
            Packing(ref["packing"]),
            bool(ref["is_dir"]),
            ref.get("raw"),
            str(ref.get("sub_path") or ""),
        )
        for name, ref in value["artifacts"].items()
    }
    parameters = {str(k): str(v) for k, v in value["parameters"].items()}
    result = value.get("result")
    return Outcome(
        NodePhase.SUCCEEDED,
        message,
        parameters=parameters,
        artifacts=artifacts,
        exit_code=0,
        result=None if result is None else str(result),
    )


# --- resume --------------------------------------------------------------------------------


class Journal:
    """The run's completed nodes, kept on disk as they complete."""

    def __init__(self, directory: Path, identity: Identity) -> None:
        self.path = directory / JOURNAL_FILE
        self.identity = identity
        self.nodes: dict[str, dict[str, Any]] = {}
        self.reusable: dict[str, dict[str, Any]] = {}
        """Nodes of the interrupted run not yet reused (empty for a fresh run)."""

    @classmethod
    def resume(cls, directory: Path) -> "Journal":
        """The journal of an interrupted run; ManifestError if there is none to resume."""
        path = directory / JOURNAL_FILE
        try:
            data = json.loads(path.read_text())
            run = data["workflow"]
            identity = Identity(
                run["name"],
                run["uid"],
                run["namespace"],
                datetime.fromisoformat(run["created"]),
            )
            nodes = dict(data["nodes"])
        except FileNotFoundError:
            raise ManifestError(f"no run to resume: {path} does not exist") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ManifestError(f"cannot resume from {path}: {error}") from None
        journal = cls(directory, identity)
        journal.reusable = nodes
        return journal

    def reuse(self, node_name: str) -> Outcome | None:
        """The outputs the interrupted run recorded for this node, if it finished there."""
        entry = self.reusable.pop(node_name, None)
        if entry is None:
            return None
        self.nodes[node_name] = entry
        return outcome_from_json(entry, "finished before the run was interrupted")

    def forget_inside(self, node_name: str) -> None:
        """The DAG `node_name` runs again: none of its nodes may be reused separately."""
        inside = (f"{node_name}.", f"{node_name}(", f"{node_name}[")
        for name in [n for n in self.reusable if n.startswith(inside)]:
            del self.reusable[name]

    def record(self, node_name: str, outcome: Outcome) -> None:
        """Add a succeeded node and rewrite the file atomically (write, fsync, rename)."""
        self.nodes[node_name] = {
            **outputs_json(outcome),
            "finished_at": datetime.now(UTC).isoformat(),
        }
        self.save()

    def save(self) -> None:
        value = {
            "workflow": {
                "name": self.identity.name,
                "uid": self.identity.uid,
                "namespace": self.identity.namespace,
                "created": self.identity.created.isoformat(),
            },
            # Nodes not reused (yet) stay: a second interruption must not lose them.
            "nodes": {**self.reusable, **self.nodes},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w") as handle:
            json.dump(value, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# --- memoization ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoSlot:
    """Where one node's cache entry lives, after substituting the key."""

    object_key: str
    cache_key: str
    max_age_seconds: float

    @classmethod
    def resolve(cls, memoize: Memoize, scope: Scope, where: str) -> "MemoSlot":
        key = substitute(memoize.key, scope, f"{where}: memoize.key")
        if not CACHE_KEY.fullmatch(key):
            raise TaskError(
                f"{where}: memoize.key {key!r} is not a valid cache key (letters, digits and "
                "dashes, starting with a letter or digit, as Argo requires)"
            )
        max_age = substitute(memoize.max_age, scope, f"{where}: memoize.maxAge")
        seconds = parse_duration(max_age, f"{where}: memoize.maxAge")
        name = memoize.cache.config_map.name
        return cls(f"{MEMO_PREFIX}/{name}/{key}.json", key, seconds)


def memo_lookup(store: ArtifactStore, slot: MemoSlot, now: datetime) -> Outcome | None:
    """A usable entry's outputs: young enough, and every artifact it names still stored."""
    if not store.exists(slot.object_key):
        return None
    try:
        entry = store.get_json(slot.object_key)
        created = datetime.fromisoformat(entry["created"])
        outcome = outcome_from_json(
            entry["outputs"],
            f"cache hit {slot.cache_key[:40]}... (computed by {entry.get('workflow', '?')})",
        )
    except (StorageError, ValueError, KeyError, TypeError):
        return None  # an unreadable entry is a miss; the run overwrites it
    if slot.max_age_seconds and (now - created).total_seconds() > slot.max_age_seconds:
        return None
    for ref in outcome.artifacts.values():
        present = store.list(ref.key.rstrip("/") + "/") if ref.is_dir else store.exists(ref.key)
        if not present:
            return None
    return outcome


def memo_save(
    store: ArtifactStore, slot: MemoSlot, outcome: Outcome, workflow: str, node: str
) -> None:
    store.put_json(
        slot.object_key,
        {
            "key": slot.cache_key,
            "created": datetime.now(UTC).isoformat(),
            "workflow": workflow,
            "node": node,
            "outputs": outputs_json(outcome),
        },
    )
