"""The HTTP routes of the Open Inference Protocol v2 and how failures become responses.

Every error body is `{"error": "..."}` (the protocol's error object): 400 for a request
that does not fit the protocol or the model, 404 for an unknown model, route or version,
500 (logged, never echoed with a traceback) for a bug on our side.
"""

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.model import LoadedModel
from serving.protocol import (
    ProtocolError,
    infer_response,
    model_metadata,
    parse_infer_request,
    server_metadata,
)
from serving.repository import ModelNotFound, ModelRepository

INLINE_ROWS = 256
"""Batches up to this size are scored on the event loop: a thread hop would cost more than
the prediction. Larger ones go to a worker thread so they do not stall other requests."""

MODEL = "/v2/models/{name}"
MODEL_VERSION = "/v2/models/{name}/versions/{version}"


def create_app(repository: ModelRepository) -> Starlette:
    """The ASGI app serving every model in `repository`."""
    server = orjson.dumps(server_metadata())

    async def live(request: Request) -> Response:
        return _json(b'{"live":true}')

    async def ready(request: Request) -> Response:
        if repository.ready:
            return _json(b'{"ready":true}')
        return _json(b'{"ready":false}', 503)

    async def server_info(request: Request) -> Response:
        return _json(server)

    async def model_info(request: Request) -> Response:
        model = _resolve(repository, request)
        return _json(orjson.dumps(model_metadata(model)))

    async def model_ready(request: Request) -> Response:
        model = _resolve(repository, request)
        return _json(orjson.dumps({"name": model.name, "ready": True}))

    async def infer(request: Request) -> Response:
        model = _resolve(repository, request)
        parsed = parse_infer_request(await request.body(), model)
        if len(parsed.rows) <= INLINE_ROWS:
            probabilities = model.predict(parsed.rows)
        else:
            probabilities = await run_in_threadpool(model.predict, parsed.rows)
        return _json(infer_response(model, probabilities, parsed.request_id))

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_info),
    ]
    for prefix in (MODEL, MODEL_VERSION):
        routes += [
            Route(prefix, model_info),
            Route(prefix + "/ready", model_ready),
            Route(prefix + "/infer", infer, methods=["POST"]),
        ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ProtocolError: _bad_request,
            ModelNotFound: _not_found,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )


def _resolve(repository: ModelRepository, request: Request) -> LoadedModel:
    params = request.path_params
    return repository.resolve(params["name"], params.get("version"))


def _json(body: bytes, status_code: int = 200) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")


def _error(message: str, status_code: int) -> Response:
    return _json(orjson.dumps({"error": message}), status_code)


async def _bad_request(request: Request, error: Exception) -> Response:
    return _error(str(error), 400)


async def _not_found(request: Request, error: Exception) -> Response:
    return _error(str(error), 404)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    response = _error(f"{error.detail}: {request.method} {request.url.path}", error.status_code)
    response.headers.update(error.headers or {})
    return response


async def _internal_error(request: Request, error: Exception) -> Response:
    # Starlette logs the traceback after this handler; the client learns only the kind.
    return _error(f"internal server error ({type(error).__name__})", 500)
