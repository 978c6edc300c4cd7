"""A task's private folder standing in for its pod: emptyDir mounts, log, progress file.

In the container a step writes to `/tmp/mlpipe/out`; locally that path is remapped into the
task's folder, per mount, so concurrent tasks never share or leak files and nothing is
written outside the run's workdir. Remapping covers every path the template declares
(artifact paths, output parameter files) and every command/argument/env token that starts
with a mount path, also in `--flag=/path` form.
"""

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

VOLUMES_DIR = "volumes"
LOG_FILE = "main.log"
PROGRESS_FILE = "progress"


def is_under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


@dataclass(frozen=True)
class Workspace:
    root: Path
    mounts: tuple[tuple[str, Path], ...]
    """(mountPath, local folder), longest mount path first so nested mounts win."""

    @classmethod
    def create(cls, root: Path, mounts: Sequence[tuple[str, str]]) -> "Workspace":
        """Fresh folders for each (mountPath, volume name): an emptyDir starts empty."""
        ordered = sorted(mounts, key=lambda mount: len(mount[0]), reverse=True)
        local = tuple((path, root / VOLUMES_DIR / volume) for path, volume in ordered)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for _, folder in local:
            folder.mkdir(parents=True, exist_ok=True)
        return cls(root, local)

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE

    @property
    def progress_file(self) -> Path:
        return self.root / PROGRESS_FILE

    @property
    def volumes(self) -> Path:
        return self.root / VOLUMES_DIR

    def path(self, declared: str) -> Path | None:
        """The local path for a container path, or None when no mount covers it."""
        for mount, folder in self.mounts:
            if is_under(declared, mount):
                rest = declared[len(mount) :].lstrip("/")
                return folder / rest if rest else folder
        return None

    def token(self, token: str) -> str:
        """A command-line token with a leading container path (or `--x=` value) remapped."""
        local = self.path(token)
        if local is not None:
            return str(local)
        flag, sep, value = token.partition("=")
        if sep and flag.startswith("-"):
            local = self.path(value)
            if local is not None:
                return f"{flag}={local}"
        return token
