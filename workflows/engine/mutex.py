"""Argo's template `synchronization.mutexes`, on one machine: one lock file per mutex.

On a cluster the controller grants a mutex (`<namespace>/Mutex/<name>`) to one node at a
time across every workflow of the namespace. Locally every run under the same workdir
shares a lock folder, so a node holds an exclusive `flock` on `<namespace>.<name>.lock`
while it runs: two runs' deploy steps never overlap here either. The lock is polled, never
blocked on, so Ctrl-C and deadlines still cancel a node that waits for it.
"""

import asyncio
import contextlib
import fcntl
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO

POLL_SECONDS = 0.2
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def lock_path(folder: Path, namespace: str, name: str) -> Path:
    return folder / f"{_UNSAFE.sub('_', namespace)}.{_UNSAFE.sub('_', name)}.lock"


@contextlib.asynccontextmanager
async def held(folder: Path, names: Sequence[tuple[str, str]]) -> AsyncIterator[None]:
    """Hold every (namespace, name) mutex, taken in sorted order so two holders of the same
    pair can never each wait for the other."""
    folder.mkdir(parents=True, exist_ok=True)
    handles: list[IO[str]] = []
    try:
        for namespace, name in sorted(set(names)):
            handle = lock_path(folder, namespace, name).open("a")
            handles.append(handle)
            while not _try_lock(handle):
                await asyncio.sleep(POLL_SECONDS)
        yield
    finally:
        for opened in handles:
            opened.close()  # closing releases the flock


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
