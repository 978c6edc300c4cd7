"""Which loaded model answers for a protocol name and version.

Routes ask only this; hot reload and canary routing (later) change what `resolve` returns
without touching the routes or the protocol code.
"""

from collections.abc import Iterable

from serving.model import LoadedModel


class ModelNotFound(Exception):
    """No model under that name (or version); the message lists what the server does hold."""


class ModelRepository:
    def __init__(self, models: Iterable[LoadedModel]) -> None:
        self._models = {model.name: model for model in models}

    @property
    def ready(self) -> bool:
        return bool(self._models)

    def resolve(self, name: str, version: str | None = None) -> LoadedModel:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(
                f"unknown model {name!r}; this server serves {sorted(self._models)}"
            )
        if version is not None and version != model.version:
            raise ModelNotFound(
                f"model {name!r} has no version {version!r}; it serves {model.version!r}"
            )
        return model
