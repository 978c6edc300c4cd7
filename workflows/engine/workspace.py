"""Remapped container paths: the fallback when a task cannot have its own mount namespace.

In the container a step writes to `/tmp/mlpipe/out`; without an isolated view
(filesystem.py) that path is remapped into the task's folder, per mount, so concurrent tasks
never share or leak files. Remapping covers every path the template declares (artifact paths,
output parameter files) and every command/argument/env token that *starts* with a mount
path, also in `--flag=/path` form; a path inside a token's text (`sh -c "echo > /mnt/x"`)
cannot be rewritten, and such manifests are refused before they run (filesystem.py).
"""

from collections.abc import Sequence
from pathlib import Path

LOG_FILE = "main.log"


def is_under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


class Workspace:
    """(mountPath, local folder) pairs; the longest mount path wins, so nested mounts work."""

    def __init__(self, root: Path, mounts: Sequence[tuple[str, Path]]) -> None:
        self.root = root
        self.mounts = tuple(sorted(mounts, key=lambda mount: len(mount[0]), reverse=True))

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
