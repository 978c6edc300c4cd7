"""The tracker's readiness probe as the engine runs it: an exec of `grep` on the kernel's
socket table, against a real listening socket."""

import asyncio
import socket

import pytest

from tests.support.probes import ready
from workflows.engine.model import Probe
from workflows.step_template import listening_probe


def test_the_trackers_exec_probe_waits_for_a_listening_socket_without_connecting() -> None:
    """The tracker's probe (exec, reading the kernel's socket table) passes once the port
    listens, and never opens a connection the tracker would log as a failed worker."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    probe = Probe(exec={"command": listening_probe(port)}, periodSeconds=1, failureThreshold=1)
    try:
        assert "did not pass within 1 s" in str(asyncio.run(ready(probe, port))), "not listening"
        listener.listen()
        listener.setblocking(False)
        assert asyncio.run(ready(probe, port)) is None
        with pytest.raises(BlockingIOError):
            listener.accept()  # the probe connected to nobody
    finally:
        listener.close()
