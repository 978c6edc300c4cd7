"""Detached server processes (the embedded S3 server, the local stable model server): is one
still running, and stop it gracefully. psutil rather than bare os.kill: it tells a zombie (a
dead child not yet reaped, which still answers signal 0) from a live process."""

import time

import psutil

POLL_SECONDS = 0.05


def is_alive(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            process.wait(0)  # reaps it when it is our own child; harmless otherwise
            return False
        return True
    except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
        return False


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM (servers drain in-flight work on it), then SIGKILL after `timeout` seconds.

    Polls rather than psutil's wait(): a process that is another process's child stays a
    zombie until that parent reaps it, and wait() would block on it forever."""
    try:
        process = psutil.Process(pid)
        process.terminate()
    except psutil.NoSuchProcess:
        return
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() > deadline:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                return
            deadline = float("inf")
        time.sleep(POLL_SECONDS)


def process_arguments(pid: int) -> list[str]:
    """The command line of a running process; [] when it is gone or not ours to read."""
    try:
        return list(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
