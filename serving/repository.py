"""Which model version answers for a name, and how a new version takes its place.

A request resolves its `Served` once, at arrival, and keeps it to the end: a reload
swaps the entry for new requests while in-flight ones finish on the version (session,
batcher, metrics) they started with. Loads run one at a time, off the event loop, and
a failed load leaves the serving version untouched.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from serving.batching import Batcher
from serving.loader import ModelSource
from serving.metrics import ModelMetrics
from serving.model import LoadedModel
from serving.source import DigestMismatch


class ModelNotFound(Exception):
    """No model under that name (or version); the message lists what the server does hold."""


@dataclass(frozen=True)
class Served:
    """One model version, ready to answer."""

    model: LoadedModel
    source: ModelSource
    batcher: Batcher
    metrics: ModelMetrics


Loader = Callable[[str, ModelSource], Served]
"""Blocking: fetch, verify and wrap a model version under a name."""


class ModelRepository:
    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._served: dict[str, Served] = {}
        self._loading = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return bool(self._served)

    def resolve(self, name: str, version: str | None = None) -> Served:
        served = self._served.get(name)
        if served is None:
            raise ModelNotFound(
                f"unknown model {name!r}; this server serves {sorted(self._served)}"
            )
        if version is not None and version != served.model.version:
            raise ModelNotFound(
                f"model {name!r} has no version {version!r}; it serves {served.model.version!r}"
            )
        return served

    def source(self, name: str) -> ModelSource | None:
        served = self._served.get(name)
        return served.source if served else None

    def add(self, name: str, source: ModelSource) -> Served:
        """Load at startup, before the event loop serves."""
        return self._install(name, self._loader(name, source))

    async def load(self, name: str, source: ModelSource) -> Served:
        """Load `source` under `name` without stopping service, then swap it in."""
        async with self._loading:
            served = await asyncio.to_thread(self._loader, name, source)
            return self._install(name, served)

    async def unload(self, name: str, digest: str | None) -> Served:
        """Stop serving `name`; if `digest` is given, only if it is what `name` serves.
        Requests already resolved finish on it."""
        async with self._loading:
            served = self.resolve(name)
            if digest is not None and digest.lower() != served.model.digest:
                raise DigestMismatch(
                    f"model {name!r} serves sha256 {served.model.digest}, not {digest}: "
                    "not unloaded"
                )
            del self._served[name]
            served.metrics.retire()
            return served

    def index(self) -> list[dict[str, str]]:
        return [
            {"name": name, "version": served.model.version, "state": "READY", "reason": ""}
            for name, served in sorted(self._served.items())
        ]

    def _install(self, name: str, served: Served) -> Served:
        previous = self._served.get(name)
        self._served[name] = served
        # A reload of the very same version keeps its info series.
        if previous is not None and _identity(previous) != _identity(served):
            previous.metrics.retire()
        return served


def _identity(served: Served) -> tuple[str, str]:
    return served.model.version, served.model.digest
