"""Detached server processes (the embedded S3 server, the local stable model server): is one
still running, and stop it gracefully. psutil rather than os.kill: it reaps our own children
(a zombie still answers signal 0) and waits for processes that are not our children."""

import psutil


def is_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM (servers drain in-flight work on it), then SIGKILL after `timeout` seconds."""
    try:
        process = psutil.Process(pid)
        process.terminate()
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait()
    except psutil.NoSuchProcess:
        return
