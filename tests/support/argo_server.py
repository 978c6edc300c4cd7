"""A minimal Argo server for tests: the parts of the REST API mlpipe uses, on loopback.

- `POST /api/v1/workflows/{namespace}` creates a workflow (names `generateName` like the
  API server, refuses a `workflowTemplateRef` to a template it does not have);
- `GET /api/v1/workflows/{namespace}` lists them (`listOptions.labelSelector`, `k=v,...`);
- `GET /api/v1/workflows/{namespace}/{name}` returns one, advancing it one step along the
  statuses a test scripted for it, so `watch` sees a run move without any sleep;
- `GET /api/v1/workflows/{namespace}/{name}/log` streams `{"result": {...}}` lines, one
  JSON object per line, like grpc-gateway does (`podName` filters).

Authentication is the Argo server's `client` mode: `Authorization: Bearer <token>` or 401.
Errors have Argo's body, `{"code": <grpc code>, "message": ...}`. Optionally serves TLS.
"""

import json
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v1/workflows/"
_GRPC_CODES = {
    HTTPStatus.BAD_REQUEST: 3,
    HTTPStatus.NOT_FOUND: 5,
    HTTPStatus.CONFLICT: 6,
    HTTPStatus.UNAUTHORIZED: 16,
}


@dataclass
class ArgoState:
    token: str
    namespace: str
    templates: set[str]
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per workflow: the statuses still to come, one per GET."""
    next_statuses: list[dict[str, Any]] = field(default_factory=list)
    """Scripted statuses for the next workflow created."""
    logs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Per workflow: (pod name, line) in order."""
    log_error: str | None = None
    """When set, log streams end with this error frame (a broken stream)."""
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    """The request bodies of every create."""
    lock: threading.Lock = field(default_factory=threading.Lock)


class ArgoTestServer:
    """Use as a context manager; `url` is the base URL the CLI's `argo.server` takes."""

    def __init__(
        self,
        token: str = "test-token",
        namespace: str = "mlpipe",
        templates: tuple[str, ...] = ("mlpipe-training",),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.state = ArgoState(token, namespace, set(templates))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "ArgoTestServer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def add_workflow(
        self,
        workflow: dict[str, Any],
        statuses: list[dict[str, Any]] | None = None,
        logs: list[tuple[str, str]] | None = None,
    ) -> None:
        """A workflow as if created earlier, in `statuses[0]`; each GET returns the next
        status (lists show the current one), and the last one stays."""
        name = workflow["metadata"]["name"]
        if statuses:
            workflow["status"] = statuses[0]
        with self.state.lock:
            self.state.workflows[name] = workflow
            self.state.statuses[name] = list(statuses or [])
            self.state.logs[name] = list(logs or [])

    def script_next(self, statuses: list[dict[str, Any]]) -> None:
        """Statuses for the next workflow the CLI creates."""
        with self.state.lock:
            self.state.next_statuses = list(statuses)


def _handler(state: ArgoState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with state.lock:
                state.requests.append((method, url.path, query))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._error(HTTPStatus.UNAUTHORIZED, "token not valid. see faq")
            if not url.path.startswith(PREFIX):
                return self._error(HTTPStatus.NOT_FOUND, f"no route {url.path}")
            parts = url.path.removeprefix(PREFIX).strip("/").split("/")
            namespace = parts[0]
            if namespace != state.namespace:
                return self._error(HTTPStatus.NOT_FOUND, f'namespaces "{namespace}" not found')
            if method == "POST" and len(parts) == 1:
                return self._create()
            if method == "GET" and len(parts) == 1:
                return self._list(query)
            if method == "GET" and len(parts) == 2:
                return self._get(parts[1])
            if method == "GET" and len(parts) == 3 and parts[2] == "log":
                return self._log(parts[1], query)
            return self._error(HTTPStatus.NOT_FOUND, f"no route {method} {url.path}")

        def _create(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            workflow = body["workflow"]
            template = workflow.get("spec", {}).get("workflowTemplateRef", {}).get("name")
            if template is not None and template not in state.templates:
                message = f'workflowtemplates.argoproj.io "{template}" not found'
                return self._error(HTTPStatus.BAD_REQUEST, message)
            metadata = workflow.setdefault("metadata", {})
            name = metadata.get("name") or metadata["generateName"] + secrets.token_hex(3)[:5]
            metadata.update(
                name=name,
                namespace=state.namespace,
                uid=secrets.token_hex(16),
                creationTimestamp="2026-01-01T00:00:00Z",
            )
            metadata.pop("generateName", None)
            with state.lock:
                state.created.append(body)
                state.workflows[name] = workflow
                state.statuses[name] = state.next_statuses
                state.next_statuses = []
                state.logs.setdefault(name, [])
            self._json(HTTPStatus.OK, workflow)

        def _list(self, query: dict[str, list[str]]) -> None:
            selector = query.get("listOptions.labelSelector", [""])[0]
            wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
            with state.lock:
                items = [
                    workflow
                    for workflow in state.workflows.values()
                    if all(
                        workflow["metadata"].get("labels", {}).get(k) == v
                        for k, v in wanted.items()
                    )
                ]
            self._json(HTTPStatus.OK, {"metadata": {"resourceVersion": "1"}, "items": items})

        def _get(self, name: str) -> None:
            with state.lock:
                workflow = state.workflows.get(name)
                if workflow is not None and state.statuses.get(name):
                    pending = state.statuses[name]
                    workflow["status"] = pending.pop(0) if len(pending) > 1 else pending[0]
            if workflow is None:
                message = f'workflows.argoproj.io "{name}" not found'
                return self._error(HTTPStatus.NOT_FOUND, message)
            self._json(HTTPStatus.OK, workflow)

        def _log(self, name: str, query: dict[str, list[str]]) -> None:
            with state.lock:
                if name not in state.workflows:
                    message = f'workflows.argoproj.io "{name}" not found'
                    return self._error(HTTPStatus.NOT_FOUND, message)
                pod = query.get("podName", [None])[0]
                lines = [(p, text) for p, text in state.logs.get(name, []) if pod in (None, p)]
            frames = [{"result": {"content": text, "podName": p}} for p, text in lines]
            if state.log_error is not None:
                frames.append({"error": {"code": 2, "message": state.log_error}})
            body = "".join(json.dumps(frame) + "\n" for frame in frames)
            self._send(HTTPStatus.OK, body.encode(), "application/json")

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._json(status, {"code": _GRPC_CODES.get(status, 2), "message": message})

        def _json(self, status: HTTPStatus, value: object) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
