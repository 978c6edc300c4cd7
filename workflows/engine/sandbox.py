"""The first moments of a task process: enter a private mount namespace, then exec the task.

Run as `python -I -S sandbox.py VIEW.json -- COMMAND...` (standard library only: it runs
before anything else and must start fast). As an ordinary user it creates a user namespace
mapping the user to root inside it, plus a mount namespace (`unshare --user --map-root-user
--mount`, done with unshare(2) directly: Python 3.11 has no os.unshare, and util-linux's
unshare cannot then perform the binds below); makes every mount private so nothing it does
is seen outside; performs the binds the engine planned (filesystem.py) onto the task's root
folder; chroots there and execs the command. A failure before exec is written to the view's
`error_file`, so the engine can tell it from the command's own failure.

`--probe` only checks that all of this is permitted here (exit 0) or says why not.
"""

import ctypes
import json
import os
import sys
import tempfile

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter_namespaces() -> None:
    """A user namespace where this user is root, and a private mount namespace."""
    uid, gid = os.getuid(), os.getgid()
    libc = _libc()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"0 {gid} 1")
    # Mounts made from here on must never propagate back to the host's namespace.
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")


def bind(source: str, target: str) -> None:
    result = _libc().mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None)
    _check(result, f"bind {source} onto {target}")


def run(view_file: str, command: list[str]) -> None:
    with open(view_file) as handle:
        view = json.load(handle)
    # Held open: after the chroot the pod's folder may no longer be reachable by its path.
    folder = os.open(os.path.dirname(view["error_file"]), os.O_RDONLY | os.O_DIRECTORY)
    name = os.path.basename(view["error_file"])
    try:
        enter_namespaces()
        root = view["root"]
        for source, target in view["binds"]:
            bind(source, root + target)
        os.chroot(root)
        os.chdir(view["cwd"])
    except OSError as error:
        _fail(folder, name, f"the task's filesystem view could not be set up: {error}")
    try:
        os.set_inheritable(folder, False)
        os.execvpe(command[0], command, os.environ)
    except OSError as error:
        _fail(folder, name, f"cannot run {command[0]!r}: {error.strerror}")


def _fail(folder: int, name: str, message: str) -> None:
    descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=folder)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(message)
    sys.exit(127)


def probe() -> int:
    """0 when namespaces and binds work for this user; else the reason on stderr."""
    try:
        with tempfile.TemporaryDirectory() as folder:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    enter_namespaces()
                    bind(folder, folder)
                except OSError as error:
                    print(error, file=sys.stderr)
                    code = 1
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
    except OSError as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        sys.exit(probe())
    separator = sys.argv.index("--")
    run(sys.argv[1], sys.argv[separator + 1 :])
