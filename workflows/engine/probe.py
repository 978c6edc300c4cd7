"""Readiness of a daemon task: Kubernetes' tcpSocket/httpGet probes against the pod's IP
(engine/podip.py; the kubelet's default host), and exec probes run beside the task (exit
code 0 is ready), as the kubelet runs them.

Kubernetes probes every `periodSeconds` and a never-ready pod just stays unready; locally
the probe is polled more often (a daemon is usually ready within a second, and dependants
wait for it), while the failure budget stays Kubernetes': initialDelaySeconds +
failureThreshold x periodSeconds. Past that budget the daemon is failed instead of leaving
the run waiting forever.
"""

import asyncio
import contextlib
import time

import httpx

from workflows.engine.model import Probe

POLL_SECONDS = 0.1


async def wait_ready(
    probe: Probe | None, pod_ip: str, port: int, alive: "asyncio.Task[int]"
) -> str | None:
    """None once ready; otherwise why not (process exited, budget spent). `port` is resolved."""
    if probe is None:
        return None
    await _sleep_unless_exited(probe.initial_delay_seconds, alive)
    deadline = time.monotonic() + probe.failure_threshold * probe.period_seconds
    while True:
        if alive.done():
            return f"exited with code {await alive} before its readinessProbe passed"
        if await _probe_once(probe, pod_ip, port):
            return None
        if time.monotonic() > deadline:
            budget = probe.failure_threshold * probe.period_seconds
            return f"readinessProbe on port {port} did not pass within {budget} s"
        await _sleep_unless_exited(min(POLL_SECONDS, probe.period_seconds), alive)


async def _sleep_unless_exited(seconds: float, alive: "asyncio.Task[int]") -> None:
    if seconds > 0:
        await asyncio.wait({alive}, timeout=seconds)


async def _probe_once(probe: Probe, pod_ip: str, port: int) -> bool:
    timeout = max(probe.timeout_seconds, 1)
    if probe.exec_ is not None:
        return await _exec_once(probe.exec_.command, timeout)
    if probe.http_get is not None:
        url = f"http://{pod_ip}:{port}{probe.http_get.path}"
        try:
            # As the kubelet's: straight to the pod, never through a proxy from the environment.
            async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return False
        # Kubernetes counts any 2xx or 3xx answer as success.
        return 200 <= response.status_code < 400
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(pod_ip, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _exec_once(command: tuple[str, ...], timeout: float) -> bool:
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return False
    try:
        return await asyncio.wait_for(process.wait(), timeout) == 0
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
