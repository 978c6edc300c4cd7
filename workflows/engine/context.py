"""What the caller (the CLI) hands the engine: storage, key layout, limits, environment."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from steps.core.store import ArtifactStore
from workflows.engine.filesystem import FilesystemMode

DEFAULT_KEY_FORMAT = "{{workflow.name}}/{{pod.name}}"


@dataclass(frozen=True)
class EngineContext:
    """Read once at the CLI edge; the engine reads no environment or config of its own."""

    store: ArtifactStore
    """The artifact repository: its bucket holds every artifact and log of the run."""
    key_format: str
    """The artifact repository's keyFormat, e.g. `{{workflow.name}}/{{pod.name}}`."""
    workdir: Path
    """Per-run workspaces go under `workdir/<workflow name>/`."""
    parallelism: int
    """Cap on concurrently running task processes (also bounded by spec.parallelism)."""
    env: Mapping[str, str]
    """The complete base environment of every task process (PATH, S3 settings, ...)."""
    secrets: Mapping[str, Mapping[str, str]]
    """Kubernetes Secrets by name -> key -> value, for env `valueFrom.secretKeyRef`."""
    stop_grace_seconds: float = 5.0
    """SIGTERM-to-SIGKILL grace when stopping a daemon or killing a task."""
    config_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Kubernetes ConfigMaps by name -> key -> value, for parameter `valueFrom`."""
    filesystem: FilesystemMode = FilesystemMode.AUTO
    """How a task gets its own container paths (engine/filesystem.py)."""
    shared_paths: tuple[Path, ...] = ()
    """Host folders every task sees at their own path, even under a private one such as
    /tmp (e.g. the folder where the deploy step leaves the local model server's state)."""
