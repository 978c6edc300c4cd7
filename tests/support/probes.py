"""Running one of the engine's readiness probes on its own, as for a daemon that never exits."""

import asyncio

from workflows.engine.model import Probe
from workflows.engine.probe import wait_ready


async def ready(probe: Probe, port: int, pod_ip: str = "127.0.0.1") -> str | None:
    """None once the probe passes against `pod_ip`, else why it did not."""
    never_exits = asyncio.create_task(asyncio.sleep(60, result=0))
    try:
        return await wait_ready(probe, pod_ip, port, never_exits)
    finally:
        never_exits.cancel()
