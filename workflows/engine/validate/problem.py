"""What a rule reports, and where: a problem names the manifest, the JSON path and Argo's reason.

Manifests reach the rules as plain dicts (YAML as loaded), not the engine's typed models:
the rules hold for any Argo manifest, including fields the local engine never runs. The
accessors here read such dicts defensively, so a malformed value is one problem, not a crash.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One rule broken: `source` is `Kind/name`, `path` a JSON path such as
    `spec.templates[2].dag.tasks[0].depends`, `message` Argo's reason in its words."""

    source: str
    path: str
    message: str
    origin: str = ""
    """The file the manifest came from, when it came from one."""

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


@dataclass(frozen=True)
class Document:
    """A manifest and where it came from (a file, or a name when built in memory)."""

    manifest: Mapping[str, Any]
    origin: str = ""

    @property
    def kind(self) -> str:
        return text(self.manifest.get("kind"))

    @property
    def name(self) -> str:
        meta = mapping(self.manifest.get("metadata"))
        return text(meta.get("name")) or text(meta.get("generateName"))

    @property
    def source(self) -> str:
        return f"{self.kind or '?'}/{self.name or '?'}"

    @property
    def spec_path(self) -> str:
        """Where the workflow spec sits: a CronWorkflow nests it under `workflowSpec`."""
        return "spec.workflowSpec" if self.kind == "CronWorkflow" else "spec"

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = mapping(self.manifest.get("spec"))
        return mapping(spec.get("workflowSpec")) if self.kind == "CronWorkflow" else spec


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> list[Mapping[str, Any]]:
    """The mappings of a list; anything else reads as empty (the schema reports its type)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [item if isinstance(item, Mapping) else {} for item in value]
    return []


def text(value: object) -> str:
    """A string field as Go reads it: absent is empty; numbers and booleans as YAML wrote them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def present(value: object) -> bool:
    """Set in Go terms: a nil pointer or an empty string/list/map is unset."""
    return value is not None and value != "" and value != [] and value != {}
