"""One task's OS process: started in its own process group, output archived and streamed.

Each process leads a new session (`start_new_session=True`), so the whole group (the step
and anything it spawned, like a model server) can be signalled at once. When the step exits,
the rest of its group is killed, as a pod's containers die with it; on Ctrl-C, a deadline or
an engine error, every live group is killed. `ProcessGroups` is the run-wide registry the
engine uses as a last resort so that no process outlives the run.
"""

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024
RESULT_BYTES = 256 * 1024
"""Argo keeps the last 256 kB of a main container's stdout as its `outputs.result`."""
PUMP_DRAIN_SECONDS = 2.0
"""After the step exits, how long output from an escaped grandchild may still be read."""


class ProcessGroups:
    """Process-group ids of every live task process of a run."""

    def __init__(self) -> None:
        self._groups: set[int] = set()

    def add(self, pgid: int) -> None:
        self._groups.add(pgid)

    def discard(self, pgid: int) -> None:
        self._groups.discard(pgid)

    def kill_all(self) -> None:
        """SIGKILL every group still registered (synchronous: safe in any `finally`)."""
        for pgid in list(self._groups):
            signal_group(pgid, signal.SIGKILL)
        self._groups.clear()


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class LocalProcess:
    """A started task process; `exited` completes with its exit code once output is drained.
    Its stdout and stderr both go to the log and the line callback; the tail of its stdout
    alone is kept for `outputs.result`."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        log: BinaryIO,
        on_line: Callable[[str], None],
        groups: ProcessGroups,
    ) -> None:
        self._process = process
        self._log = log
        self._on_line = on_line
        self._groups = groups
        self.pid = process.pid
        self._stdout = bytearray()
        self._pump = asyncio.gather(
            self._read_output(process.stdout, keep=True), self._read_output(process.stderr)
        )
        self.exited: asyncio.Task[int] = asyncio.create_task(self._finish())

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        log_file: Path,
        on_line: Callable[[str], None],
        groups: ProcessGroups,
    ) -> "LocalProcess":
        """Start `argv`; stdout and stderr go, interleaved, to `log_file` and `on_line`."""
        log = log_file.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        groups.add(process.pid)
        return cls(process, log, on_line, groups)

    @property
    def running(self) -> bool:
        return not self.exited.done()

    @property
    def stdout(self) -> str:
        """The last RESULT_BYTES of what the process wrote to stdout."""
        return self._stdout.decode(errors="replace")

    async def wait(self) -> int:
        """The exit code (re-raising any error of the output reader, e.g. an observer's)."""
        return await asyncio.shield(self.exited)

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, SIGKILL it after `grace` seconds; returns the exit code."""
        if self.running:
            signal_group(self.pid, signal.SIGTERM)
            done, _ = await asyncio.wait({self.exited}, timeout=grace)
            if not done:
                signal_group(self.pid, signal.SIGKILL)
        return await self.wait()

    async def _finish(self) -> int:
        code = await self._process.wait()
        # The rest of the group dies with the step, like a pod's other processes.
        signal_group(self.pid, signal.SIGKILL)
        self._groups.discard(self.pid)
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), PUMP_DRAIN_SECONDS)
        except TimeoutError:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        finally:
            self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL the group now (used when the run is being torn down)."""
        signal_group(self.pid, signal.SIGKILL)

    async def _read_output(self, stream: asyncio.StreamReader | None, keep: bool = False) -> None:
        assert stream is not None
        pending = b""
        try:
            while chunk := await stream.read(CHUNK):
                if keep:
                    self._stdout += chunk
                    del self._stdout[:-RESULT_BYTES]
                self._log.write(chunk)
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    self._on_line(line.rstrip(b"\r").decode(errors="replace"))
            if pending:
                self._on_line(pending.rstrip(b"\r").decode(errors="replace"))
        except BaseException:
            # Nobody reads the pipe any more: stop the process rather than let it block.
            self.kill()
            raise
        finally:
            self._log.flush()
