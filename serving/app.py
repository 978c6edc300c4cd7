"""The HTTP side of the server: a plain ASGI app for the Open Inference Protocol v2 REST
routes, the repository extension (index, load, unload) and `/metrics`.

Plain ASGI rather than a framework: single-row requests at thousands per second on two
cores are dominated by per-request overhead, and Starlette's routing, Request and
Response objects cost ~30% of the throughput here (benchmarks/serving.py measures the
result against a no-op endpoint on the same uvicorn and against KServe). Routing is one
regex.

Every error body is `{"error": "..."}` (the protocol's error object): 400 for a request
that does not fit the protocol or the model, 401 for a load or unload without the control
token and 403 with a wrong one, 404 for an unknown model, version or route, 405 for a wrong
method, 409 for a model file whose sha256 is not the digest given, 413 for an oversized
body, 500 (logged with its traceback, never sent to the client) for a bug on our side.
"""

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any, NamedTuple

import orjson

from serving.control import CHALLENGE, Forbidden, Unauthorized, check_bearer
from serving.loader import LOAD_ERRORS, LoadRequestError, requested_source, unload_digest
from serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from serving.metrics import ServerMetrics
from serving.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    infer_response,
    model_metadata,
    parse_infer_request,
    server_metadata,
)
from serving.registry import version_model
from serving.repository import ModelNotFound, ModelRepository
from serving.source import DigestMismatch

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Default limit of an inference request body: far above any batch the server takes."""
MAX_CONTROL_BODY_BYTES = 64 * 1024
"""Limit of a load or unload request body: a few parameters."""
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""A model name is part of URLs and metric labels: no characters that need escaping."""
MODEL_ROUTE = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?")
CONTROL_ROUTE = re.compile(r"/v2/repository/models/([^/]+)/(load|unload)")

JSON = b"application/json"
BINARY = b"application/octet-stream"
logger = logging.getLogger(__name__)


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


CLOSE = (b"connection", b"close")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nobody to answer."""


LIVE = Response(200, b'{"live":true}')
READY = Response(200, b'{"ready":true}')
NOT_READY = Response(503, b'{"ready":false}')


class InferenceServer:
    """The ASGI app serving every model in `repository`."""

    def __init__(
        self,
        repository: ModelRepository,
        metrics: ServerMetrics,
        max_batch_size: int,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        token: bytes | None = None,
        registry: str | None = None,
    ) -> None:
        """`token`: the control token load and unload require (None: open); `registry`:
        where a load by digest alone finds the model file (None: nowhere)."""
        self._repository = repository
        self._metrics = metrics
        self._max_rows = max_batch_size
        self._max_body = max_body_bytes
        self._token = token
        self._registry = registry
        self._server = Response(200, orjson.dumps(server_metadata()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; websockets are not part of the protocol
        try:
            response = await self._route(scope, receive)
        except ClientGone:
            return
        except Exception as error:
            response = error_response(error)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
                    *response.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _route(self, scope: Scope, receive: Receive) -> Response:
        path: str = scope["path"]
        method: str = scope["method"]
        if match := MODEL_ROUTE.fullmatch(path):
            name, version, action = match.groups()
            if action == "/infer":
                _allow(method, "POST", path)
                return await self._infer(scope, receive, name, version)
            _allow(method, "GET", path)
            served = self._repository.resolve(name, version)
            if action == "/ready":
                return _json({"name": name, "ready": True})
            return _json(model_metadata(served.model))
        if match := CONTROL_ROUTE.fullmatch(path):
            _allow(method, "POST", path)
            name, action = match.groups()
            headers = _RequestHeaders(scope)
            check_bearer(self._token, headers.authorization, f"repository {action}")
            if not MODEL_NAME.fullmatch(name):
                raise HttpError(400, bad_name(name))
            body = await _read_body(headers, receive, MAX_CONTROL_BODY_BYTES)
            if action == "load":
                return await self._load(name, body)
            return await self._unload(name, body)
        if path == "/v2/health/live":
            _allow(method, "GET", path)
            return LIVE
        if path == "/v2/health/ready":
            _allow(method, "GET", path)
            return READY if self._repository.ready else NOT_READY
        if path == "/v2":
            _allow(method, "GET", path)
            return self._server
        if path == "/metrics":
            _allow(method, "GET", path)
            return Response(200, self._metrics.render(), METRICS_CONTENT_TYPE.encode())
        if path == "/v2/repository/index":
            _allow(method, "POST", path)
            # Every model listed is loaded and ready, so the body's optional `ready`
            # filter changes nothing; it is not read.
            return _json(self._repository.index())
        raise HttpError(404, f"unknown route: {method} {path}")

    async def _infer(
        self, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> Response:
        start = perf_counter()
        try:
            served = self._repository.resolve(name, version)
        except ModelNotFound:
            self._metrics.unknown_model(404)
            raise
        try:
            headers = _RequestHeaders(scope)
            body = await _read_body(headers, receive, self._max_body)
            request = parse_infer_request(body, headers.json_length(), served.model, self._max_rows)
            scores = await served.batcher.score(request.rows)
            payload, json_length = infer_response(
                served.model, scores, request.request_id, request.binary_output
            )
            if json_length is None:
                response = Response(200, payload)
            else:
                response = Response(
                    200, payload, BINARY, ((HEADER_LENGTH.encode(), str(json_length).encode()),)
                )
        except ClientGone:
            raise
        except Exception as error:
            response = error_response(error)
        served.metrics.request(response.status, perf_counter() - start)
        return response

    async def _load(self, name: str, body: bytes) -> Response:
        registry = self._registry
        source = requested_source(
            self._repository.source(name),
            body,
            (lambda digest: version_model(registry, name, digest)) if registry else None,
        )
        if source is None:
            raise ModelNotFound(
                f"unknown model {name!r}: to load a new one, give parameters.model "
                "(a path or s3:// URI) and parameters.digest (its sha256)"
            )
        served = await self._repository.load(name, source)
        logger.info("model %r now serves version %s", name, served.model.version)
        return _json({"name": name, "version": served.model.version, "digest": served.model.digest})

    async def _unload(self, name: str, body: bytes) -> Response:
        served = await self._repository.unload(name, unload_digest(body))
        logger.info("model %r (version %s) unloaded", name, served.model.version)
        return _json({"name": name, "version": served.model.version, "digest": served.model.digest})


def bad_name(name: str) -> str:
    return (
        f"model name {name!r} must be 1-63 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    )


def error_response(error: Exception) -> Response:
    """The error object for any failure; only our own bugs are logged with a traceback."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if isinstance(error, HttpError):
        status, headers = error.status, error.headers
    elif isinstance(error, Unauthorized):
        status, headers = 401, (CHALLENGE,)
    elif isinstance(error, Forbidden):
        status = 403
    elif isinstance(error, DigestMismatch):
        status = 409
    elif isinstance(error, (ProtocolError, LoadRequestError, *LOAD_ERRORS)):
        status = 400
    elif isinstance(error, ModelNotFound):
        status = 404
    else:
        logger.exception("internal error")
        return Response(500, orjson.dumps({"error": f"internal error ({type(error).__name__})"}))
    return Response(status, orjson.dumps({"error": str(error)}), headers=headers)


def _allow(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise HttpError(
            405,
            f"method {method} not allowed for {path}; use {allowed}",
            ((b"allow", allowed.encode()),),
        )


def _json(value: object) -> Response:
    return Response(200, orjson.dumps(value))


class _RequestHeaders:
    """The request headers the server reads, found in one pass over the header list."""

    __slots__ = ("authorization", "content_encoding", "content_length", "inference_header_length")

    def __init__(self, scope: Scope) -> None:
        self.content_length: bytes | None = None
        self.content_encoding: bytes | None = None
        self.inference_header_length: bytes | None = None
        self.authorization: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                self.content_length = value
            elif key == b"content-encoding":
                self.content_encoding = value
            elif key == _HEADER_LENGTH:
                self.inference_header_length = value
            elif key == b"authorization":
                self.authorization = value

    def json_length(self) -> int | None:
        """Bytes of JSON before the binary tensor data, if the request has any."""
        value = self.inference_header_length
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise HttpError(400, f"{HEADER_LENGTH} {value!r} is not a number") from None


_HEADER_LENGTH = HEADER_LENGTH.encode()


async def _read_body(headers: _RequestHeaders, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused early if it is larger than `limit` bytes or
    compressed. A refused body's connection is closed: the client may still be sending."""
    declared = headers.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {int(declared)} bytes exceeds {limit}", (CLOSE,))
    encoding = headers.content_encoding
    if encoding not in (None, b"identity"):
        raise HttpError(
            400, f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"body exceeds {limit} bytes", (CLOSE,))
        if not message.get("more_body", False):
            # The common case, a body that arrived in one piece, is returned as it is.
            return b"".join([*chunks, chunk]) if chunks else chunk
        chunks.append(chunk)
