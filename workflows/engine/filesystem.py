"""A task's own filesystem: what its container paths are, locally.

In a pod, `/tmp`, every volumeMount and every artifact or output path belong to that pod
alone. Locally each task gets the same, one of two ways:

- **Isolated** (user namespaces available, Linux): the task sees this machine's filesystem
  as its image, except that a private `/tmp`, each volume at its mountPath, and the folders
  holding its declared paths are its own, all backed by folders in the task's workspace. The
  engine plans the view (`plan_view`, pure) and `sandbox.py` builds it in a private mount
  namespace before exec. Any path works, inside scripts too: `sh -c "echo hi > /mnt/w/x"`.
- **Remapped** (no namespaces: macOS, a locked-down kernel, or forced): today's argument
  remapping (workspace.py). Only paths under a volumeMount exist, and only arguments that
  start with one are rewritten; a manifest needing more is refused before it runs, naming
  the reason (`remap_problems`).

Where a directory on the way to a private path exists on this machine, the view shows a
folder of the task's own in its place whose entries are this machine's (each bound back),
so adding `/mnt/out` never writes into the real `/mnt`, and `/mnt`'s content stays visible.
"""

import functools
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from workflows.engine import sandbox
from workflows.engine.workspace import LOG_FILE, Workspace, is_under

if TYPE_CHECKING:
    from workflows.engine.model import DnsConfig

VIEW_FILE = "view.json"
ERROR_FILE = "view-error"
ROOT_DIR = "root"
PRIVATE_DIR = "private"
PROBE_TIMEOUT_SECONDS = 30


class FilesystemMode(StrEnum):
    AUTO = "auto"
    """Isolated where user namespaces work, else remapped."""
    ISOLATED = "isolated"
    REMAP = "remap"


@functools.cache
def isolation_unavailable() -> str | None:
    """Why this machine cannot give tasks their own mount namespace; None when it can."""
    if sys.platform != "linux":
        return f"mount namespaces are Linux-only (this is {sys.platform})"
    try:
        probe = subprocess.run(
            [sys.executable, "-I", "-S", sandbox.__file__, "--probe"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"the namespace probe did not run: {error}"
    if probe.returncode != 0:
        return f"user namespaces are not permitted here: {probe.stderr.strip() or 'no reason'}"
    return None


def resolve_mode(requested: FilesystemMode) -> tuple[FilesystemMode, str]:
    """The mode tasks run in, and why when it is the fallback."""
    if requested is FilesystemMode.REMAP:
        return FilesystemMode.REMAP, "remapping was asked for (filesystem: remap)"
    reason = isolation_unavailable()
    if reason is None:
        return FilesystemMode.ISOLATED, ""
    if requested is FilesystemMode.ISOLATED:
        raise OSError(f"filesystem: isolated was asked for, but {reason}")
    return FilesystemMode.REMAP, reason


# --- planning the isolated view ----------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """Host `source` (a folder, or a file) seen at container path `target`."""

    target: str
    source: Path
    file: bool = False


@dataclass(frozen=True)
class Placeholder:
    """Something to create under the view's root (or in a mount's source) before binding."""

    path: Path
    kind: str  # "dir", "file" or "symlink"
    link: str = ""


@dataclass(frozen=True)
class ViewPlan:
    root: Path
    placeholders: tuple[Placeholder, ...]
    binds: tuple[tuple[str, str], ...]
    """(host source, container target) in the order the sandbox performs them."""
    mounts: tuple[Mount, ...]

    def host_path(self, container_path: str) -> Path:
        """Where the engine finds (or puts) a file the task sees at `container_path`."""
        path = canonical(container_path)
        for mount in sorted(self.mounts, key=lambda m: len(m.target), reverse=True):
            if is_under(path, mount.target):
                rest = path[len(mount.target) :].lstrip("/")
                return mount.source / rest if rest else mount.source
        return self.root / path.lstrip("/")


def canonical(path: str) -> str:
    """A container path with this machine's symlinks resolved (`/var/run` is `/run`), so the
    view and the engine agree on which folder a path is in."""
    return os.path.realpath(posixpath.normpath(path))


def _ancestors(path: str) -> list[str]:
    """`/a/b/c` -> [`/`, `/a`, `/a/b`] (proper ancestors, shallowest first)."""
    parts = path.strip("/").split("/")
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _child(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}"


def plan_view(
    root: Path, mounts: Sequence[Mount], private_files: Iterable[str], private_dirs: Iterable[str]
) -> ViewPlan:
    """The binds that give a task its view; `private_files` (declared artifact and output
    paths) get a folder of the task's own around them, `private_dirs` (a workingDir) are
    the task's own folders. Reads this machine's directory listings, writes nothing."""
    mounts = sorted(
        (Mount(canonical(m.target), m.source, m.file) for m in mounts),
        key=lambda m: m.target.count("/"),
    )

    def enclosing(path: str) -> Mount | None:
        """The innermost mount strictly containing `path`."""
        found = [m for m in mounts if path != m.target and is_under(path, m.target)]
        return found[-1] if found else None

    def in_mount(path: str) -> bool:
        return any(is_under(path, m.target) for m in mounts)

    owned = {"/"}
    for mount in mounts:
        owned.update(a for a in _ancestors(mount.target) if not in_mount(a))
    excluded = {m.target for m in mounts}
    for path in map(canonical, private_files):
        if not in_mount(path):
            # Up to the deepest folder this machine has: what is below it the task (or the
            # engine, for an input) creates itself, as in a container.
            owned.update(a for a in _ancestors(path) if os.path.isdir(a))
            excluded.add(path)
    for path in map(canonical, private_dirs):
        if not in_mount(path):
            owned.update([*_ancestors(path), path])
    placeholders: list[Placeholder] = []
    binds: list[tuple[str, str]] = []
    for folder in sorted(owned):
        placeholders.append(Placeholder(root / folder.lstrip("/"), "dir"))
        for entry in _listing(folder):
            path = _child(folder, entry.name)
            if path in owned or path in excluded:
                continue
            local = root / path.lstrip("/")
            if entry.is_symlink():
                placeholders.append(Placeholder(local, "symlink", os.readlink(entry.path)))
                continue
            placeholders.append(Placeholder(local, "dir" if entry.is_dir() else "file"))
            binds.append((entry.path, path))
    for mount in mounts:
        outer = enclosing(mount.target)
        if outer is None:
            local = root / mount.target.lstrip("/")
        else:
            local = outer.source / mount.target[len(outer.target) :].lstrip("/")
        placeholders.append(Placeholder(local, "file" if mount.file else "dir"))
        binds.append((str(mount.source), mount.target))
    return ViewPlan(root, tuple(placeholders), tuple(binds), tuple(mounts))


def _listing(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def create_placeholders(plan: ViewPlan) -> None:
    """Make every bind target exist (in the task's own folders, never on the host's)."""
    for placeholder in plan.placeholders:
        path = placeholder.path
        if placeholder.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            continue
        if placeholder.kind == "symlink":
            path.symlink_to(placeholder.link)
        else:
            path.touch()


# --- one pod's files ------------------------------------------------------------------------

VOLUMES_DIR = "volumes"
STAGING = "/argo/staging"
"""Where Argo's executor puts a script template's source."""
CONTROL = "/var/run/argo"
"""Argo's executor folder in a pod: ARGO_PROGRESS_FILE is `<CONTROL>/progress`."""
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
ENGINE_PATHS = frozenset(
    Path(path).resolve() for path in (sys.prefix, sys.base_prefix, Path(__file__).parents[2])
)
"""What a task needs of the engine's machine whatever it mounts: the interpreter that runs
`python` commands and the project whose `python -m steps` they run (images.py)."""


@dataclass(frozen=True)
class PodFiles:
    """The folder standing in for one pod, and how its container paths reach this machine.

    `view` is set when the pod is isolated, `workspace` when its paths are remapped.
    """

    folder: Path
    view: ViewPlan | None = None
    workspace: Workspace | None = None

    @property
    def log_file(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def progress_file(self) -> Path:
        return self.folder / "argo" / "progress"

    @property
    def progress_env(self) -> str:
        return f"{CONTROL}/progress" if self.view else str(self.progress_file)

    @property
    def script_file(self) -> Path:
        return self.folder / "staging" / "script"

    @property
    def script_path(self) -> str:
        return f"{STAGING}/script" if self.view else str(self.script_file)

    @property
    def error_file(self) -> Path:
        return self.folder / ERROR_FILE

    @property
    def scratch(self) -> Path:
        """Space for the engine's own temporary files (archives being packed, downloads)."""
        return self.folder

    def host_path(self, container_path: str) -> Path | None:
        """Where the engine finds (or puts) what the task sees at `container_path`; None when
        remapping has no place for it."""
        if self.view is not None:
            return self.view.host_path(container_path)
        assert self.workspace is not None
        return self.workspace.path(container_path)

    def token(self, text: str) -> str:
        """A command-line token as the task must receive it (remapped, or as written)."""
        return self.workspace.token(text) if self.workspace is not None else text

    def launch(self, argv: Sequence[str], cwd: str | None) -> tuple[list[str], Path]:
        """(argv, host cwd) that run `argv` as the task: inside its view when isolated."""
        if self.view is None:
            assert self.workspace is not None
            local = self.workspace.path(cwd) if cwd else None
            return list(argv), local or self.folder
        view = {
            "root": str(self.view.root),
            "binds": list(self.view.binds),
            "cwd": cwd or "/",
            "error_file": str(self.error_file),
        }
        view_file = self.folder / VIEW_FILE
        view_file.write_text(json.dumps(view))
        wrapped = [sys.executable, "-I", "-S", sandbox.__file__, str(view_file), "--", *argv]
        return wrapped, self.folder

    def setup_error(self) -> str | None:
        """Why the isolated view could not be built, if it could not."""
        try:
            return self.error_file.read_text()
        except FileNotFoundError:
            return None

    def volume(self, name: str) -> Path:
        return self.folder / VOLUMES_DIR / name

    def discard(self) -> None:
        """Remove what the pod wrote (its log has been archived by then), unless a process
        the task started still runs inside its view: the local deploy backend's stable server
        outlives its deploy task as a Deployment outlives the pod that created it, and removing
        a folder the view binds onto would unmount it under that process (Linux detaches a
        mount in every namespace when its mount point is removed)."""
        if self.view is not None and _runs_inside(self.view.root):
            return
        for name in (VOLUMES_DIR, ROOT_DIR, PRIVATE_DIR):
            shutil.rmtree(self.folder / name, ignore_errors=True)


def _runs_inside(root: Path) -> bool:
    """Whether any process on this machine has `root` as its root folder (chrooted there).

    Read from /proc directly: psutil, used elsewhere for processes, does not expose a root."""
    target = os.path.realpath(root)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/root") == target:
                    return True
            except OSError:  # gone meanwhile, or another user's
                continue
    return False


def pod_files(
    folder: Path,
    mode: FilesystemMode,
    mounts: Sequence[tuple[str, str]],
    private_files: Iterable[str],
    private_dirs: Iterable[str],
    shared: Iterable[Path] = (),
    dns: "DnsConfig | None" = None,
) -> PodFiles:
    """A fresh folder for a pod: an emptyDir per (mountPath, volume name) mount, and for an
    isolated pod its view (private /tmp, staging, control folder, shared host folders)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "argo").mkdir(parents=True)
    (folder / "staging").mkdir()
    volumes = [(path, folder / VOLUMES_DIR / name) for path, name in mounts]
    for _, local in volumes:
        local.mkdir(parents=True, exist_ok=True)
    if mode is FilesystemMode.REMAP:
        return PodFiles(folder, workspace=Workspace(folder, volumes))
    plan_mounts = [Mount(path, local) for path, local in volumes]
    if not any(canonical(path) == "/tmp" for path, _ in mounts):
        tmp = folder / PRIVATE_DIR / "tmp"
        tmp.mkdir(parents=True)
        tmp.chmod(0o1777)
        plan_mounts.append(Mount("/tmp", tmp))
    plan_mounts += [Mount(STAGING, folder / "staging"), Mount(CONTROL, folder / "argo")]
    private = [canonical(m.target) for m in plan_mounts]
    for path in {*shared, *ENGINE_PATHS}:
        # Only what a private path would hide needs binding back (a /work volume hides a
        # checkout under /work, and with it the interpreter the tasks run).
        if path.is_dir() and any(is_under(canonical(str(path)), target) for target in private):
            plan_mounts.append(Mount(str(path), path))
    if dns is not None:
        resolv = folder / "resolv.conf"
        resolv.write_text(resolv_conf(_read(HOST_RESOLV_CONF), dns))
        plan_mounts.append(Mount(str(HOST_RESOLV_CONF), resolv, file=True))
    view = plan_view(folder / ROOT_DIR, plan_mounts, private_files, private_dirs)
    create_placeholders(view)
    return PodFiles(folder, view=view)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def resolv_conf(host: str, dns: "DnsConfig") -> str:
    """Kubernetes' merge of a pod's dnsConfig into the node's resolver settings: nameservers
    and search domains appended, options overriding by name."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str] = {}
    for line in host.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches += words[1:]
        elif words[0] == "options":
            for word in words[1:]:
                name, _, value = word.partition(":")
                options[name] = value
    nameservers += [n for n in dns.nameservers if n not in nameservers]
    searches += [s for s in dns.searches if s not in searches]
    for option in dns.options:
        options[option.name] = option.value or ""
    lines = [f"nameserver {n}" for n in nameservers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(f"{k}:{v}" if v else k for k, v in options.items()))
    return "\n".join(lines) + "\n"


_BOUNDARY = r"(?=/|$|[^A-Za-z0-9_.-])"


def inner_uses(text: str, mounts: Iterable[str]) -> list[str]:
    """Mount paths `text` uses other than at its start (which remapping cannot rewrite)."""
    flag, equals, _ = text.partition("=")
    rewritable = {0, len(flag) + 1} if equals and flag.startswith("-") else {0}
    found = []
    for mount in mounts:
        pattern = re.escape(mount) + _BOUNDARY
        if any(m.start() not in rewritable for m in re.finditer(pattern, text)):
            found.append(mount)
    return found
