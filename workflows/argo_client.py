"""Every call mlpipe makes to an Argo server, through Hera's `WorkflowsService`.

One thin module: settings are read once at the CLI edge (`argo_settings`), each call goes
through the service, answers become plain snapshots (`RunView`, `NodeView`) and every
failure becomes one `ArgoError`: a one-line message and the CLI's exit code (2 for what the
user can fix: credentials, names; 3 for an unreachable or failing server).

Two things Hera leaves to its caller: requests get a timeout and GET retries (its session
has neither, so a silent server would hang the CLI), and workflow logs are read line by line
because the server streams them as one JSON object per line, which Hera's `workflow_logs`
parses as a single document.
"""

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import urljoin

import requests
import urllib3
from hera.exceptions import (
    AlreadyExists,
    BadRequest,
    Forbidden,
    HeraException,
    NotFound,
    Unauthorized,
    exception_from_server_response,
)
from hera.workflows import WorkflowsService
from hera.workflows import models as m
from pydantic import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from steps.core.errors import MlpipeError
from workflows.config import LoadedConfig
from workflows.engine.naming import pod_name

TOKEN_ENV = "ARGO_TOKEN"
DONE_PHASES: Final = frozenset({"Succeeded", "Failed", "Error"})
MAIN_CONTAINER = "main"
_SERVER_MESSAGE = re.compile(r"`(.*)`", re.DOTALL)
_OS_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class ArgoError(MlpipeError):
    """A failed server call, as one line for the user and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code


@dataclass(frozen=True)
class ArgoSettings:
    """Where the server is and how to trust and authenticate to it."""

    server: str
    """Base URL ending in `/` (the UI is served there too)."""
    namespace: str
    token: str | None
    verify: bool | str
    """False, True (system CAs) or the path of a CA bundle."""
    timeout: float


def argo_settings(config: LoadedConfig, environ: Mapping[str, str]) -> ArgoSettings:
    """The server settings of a config; the token comes from env ARGO_TOKEN, else
    `argo.token_file`, else `argo.token` (paths made absolute when the config loaded)."""
    argo = config.pipeline.argo
    if argo.server is None:
        raise ArgoError(
            f"{config.path}: no Argo server configured: set argo.server or MLPIPE_ARGO_SERVER", 2
        )
    token = environ.get(TOKEN_ENV) or None
    if token is None and argo.token_file is not None:
        path = argo.token_file
        try:
            token = path.read_text().strip() or None
        except OSError as error:
            message = f"key 'argo.token_file': cannot read {path}: {error.strerror}"
            raise ArgoError(message, 2) from error
    if token is None and argo.token is not None:
        token = argo.token.get_secret_value()
    verify: bool | str = argo.verify_tls
    if argo.verify_tls and argo.ca_file is not None:
        ca_file = argo.ca_file
        if not ca_file.is_file():
            raise ArgoError(f"key 'argo.ca_file': no such file: {ca_file}", 2)
        verify = str(ca_file)
    return ArgoSettings(
        server=argo.server.rstrip("/") + "/",
        namespace=argo.namespace,
        token=token,
        verify=verify,
        timeout=argo.request_timeout_seconds,
    )


@dataclass(frozen=True)
class NodeView:
    """One node of a workflow as the server reports it."""

    id: str
    name: str
    display_name: str
    type: str
    template: str
    phase: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: str | None = None
    message: str = ""
    outputs: Mapping[str, str] = field(default_factory=dict)
    pod_name: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()


@dataclass(frozen=True)
class RunView:
    """A workflow (a run) as the server reports it."""

    name: str
    namespace: str
    phase: str
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    progress: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    nodes: tuple[NodeView, ...] = ()

    @property
    def done(self) -> bool:
        return self.phase in DONE_PHASES

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded"


@dataclass(frozen=True)
class LogLine:
    pod: str
    content: str


class _TimeoutSession(requests.Session):
    """A session whose requests time out unless the caller says otherwise."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout
        # Reads are safe to repeat; a create is not (it could make two runs).
        retry = Retry(
            total=2,
            connect=2,
            read=2,
            status=2,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


class ArgoClient:
    """The Argo server of one config; use as a context manager to close its session."""

    def __init__(self, settings: ArgoSettings) -> None:
        self.settings = settings
        self._service = WorkflowsService(
            host=settings.server,
            # requests' `verify` takes a CA bundle path as well as a bool; Hera passes its
            # `verify_ssl` through to requests unchanged but types it bool.
            verify_ssl=settings.verify,  # type: ignore[arg-type]
            token=settings.token,
            namespace=settings.namespace,
            session=_TimeoutSession(settings.timeout),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._service.session.close()

    def link(self, name: str) -> str:
        """The run's page in the Argo UI (served by the same server)."""
        return urljoin(self.settings.server, f"workflows/{self.settings.namespace}/{name}")

    def submit(self, manifest: Mapping[str, Any]) -> RunView:
        """Create a Workflow from a compiled manifest (one with a workflowTemplateRef)."""
        template = manifest.get("spec", {}).get("workflowTemplateRef", {}).get("name")
        request = m.WorkflowCreateRequest(
            namespace=self.settings.namespace, workflow=m.Workflow.model_validate(manifest)
        )
        with self._errors("submitting the workflow", template=template):
            return _run_view(self._service.create_workflow(request))

    def get(self, name: str) -> RunView:
        with self._errors(f"reading workflow {name!r}", workflow=name):
            return _run_view(self._service.get_workflow(name))

    def list(self, label_selector: str, limit: int) -> list[RunView]:
        """The newest `limit` runs matching the selector, newest first."""
        with self._errors("listing workflows"):
            found = self._service.list_workflows(label_selector=label_selector)
        runs = [_run_view(item) for item in found.items or []]
        runs.sort(key=lambda run: run.created_at or datetime.min.astimezone(), reverse=True)
        return runs[:limit]

    def apply_cron(self, manifest: Mapping[str, Any]) -> Literal["created", "updated"]:
        """Create the CronWorkflow `manifest`, or update the one of the same name in place
        (the resourceVersion guards against a concurrent change), so it keeps its run history
        and its place in the UI."""
        cron = m.CronWorkflow.model_validate(manifest)
        name = cron.metadata.name
        if not name:
            raise ArgoError("the CronWorkflow manifest has no metadata.name", 2)
        with self._errors(f"applying CronWorkflow {name!r}"):
            try:
                existing = self._service.get_cron_workflow(name)
            except NotFound:
                request = m.CreateCronWorkflowRequest(cron_workflow=cron)
                self._service.create_cron_workflow(request)
                return "created"
            cron.metadata.resource_version = existing.metadata.resource_version
            self._service.update_cron_workflow(
                name, m.UpdateCronWorkflowRequest(cron_workflow=cron)
            )
            return "updated"

    def logs(self, name: str, pods: Sequence[str] = ()) -> Iterator[LogLine]:
        """The main container's log lines of the whole run, or of the given pods."""
        url = urljoin(
            self.settings.server, f"api/v1/workflows/{self.settings.namespace}/{name}/log"
        )
        service = self._service
        selected: Sequence[str | None] = pods or [None]
        for pod in selected:
            params = {"logOptions.container": MAIN_CONTAINER, "podName": pod}
            with self._errors(f"reading the logs of {name!r}", workflow=name):
                response = service.session.get(
                    url,
                    params=params,
                    headers={"Authorization": service.token} if service.token else {},
                    verify=service.verify_ssl,
                    cert=service.client_certs,
                    stream=True,
                )
                if not response.ok:
                    raise exception_from_server_response(response)
                with response:
                    yield from _log_lines(response.iter_lines())

    # --- errors ----------------------------------------------------------------------------

    @contextmanager
    def _errors(
        self, what: str, *, workflow: str | None = None, template: str | None = None
    ) -> Iterator[None]:
        """Whatever a call raises becomes one ArgoError naming the server and what failed."""
        try:
            yield
        except ArgoError:
            raise
        except Exception as error:
            translated = _translate(self.settings, what, workflow, template, error)
            if translated is None:
                raise
            raise translated from error


def _translate(
    settings: ArgoSettings,
    what: str,
    workflow: str | None,
    template: str | None,
    error: Exception,
) -> ArgoError | None:
    """What the user can act on: who failed, why, and the fix; None for a programming error,
    which keeps its traceback."""
    server = settings.server.rstrip("/")
    namespace = settings.namespace
    if isinstance(error, Unauthorized):
        return ArgoError(
            f"{what}: the Argo server at {server} rejected the credentials (HTTP 401: "
            f"{_server_message(error)}); set {TOKEN_ENV} or argo.token_file to a valid token",
            2,
        )
    if isinstance(error, Forbidden):
        return ArgoError(
            f"{what}: not allowed in namespace {namespace} (HTTP 403: "
            f"{_server_message(error)}); the token's ServiceAccount needs the "
            "mlpipe-submitter Role (`mlpipe install`)",
            2,
        )
    if isinstance(error, NotFound):
        if workflow is not None:
            return ArgoError(f"no workflow {workflow!r} in namespace {namespace}", 2)
        return ArgoError(f"{what}: not found (HTTP 404: {_server_message(error)})", 2)
    if isinstance(error, BadRequest | AlreadyExists):
        hint = ""
        message = _server_message(error)
        if template is not None and "not found" in message:
            hint = f"; is WorkflowTemplate {template!r} installed (`mlpipe install`)?"
        return ArgoError(
            f"{what}: the server refused it (HTTP {error.status_code}: {message}){hint}",
            2,
        )
    if isinstance(error, HeraException):
        return ArgoError(f"{what}: Argo server error at {server}: {error}", 3)
    if isinstance(error, requests.exceptions.SSLError):
        return ArgoError(
            f"{what}: TLS verification of {server} failed ({_reason(error)}); "
            "set argo.ca_file to the CA that signed its certificate",
            3,
        )
    if isinstance(error, requests.exceptions.Timeout) or _timed_out(_retried(error)):
        return ArgoError(
            f"{what}: the Argo server at {server} did not answer within {settings.timeout:g} s",
            3,
        )
    if isinstance(error, requests.exceptions.RequestException):
        return ArgoError(f"{what}: cannot reach the Argo server at {server} ({_reason(error)})", 3)
    if isinstance(error, ValueError | ValidationError):
        return ArgoError(f"{what}: unexpected answer from {server}: {error}", 3)
    return None


def _server_message(error: HeraException) -> str:
    match = _SERVER_MESSAGE.search(str(error))
    return match.group(1) if match else str(error)


def _retried(error: Exception) -> BaseException | None:
    """What made the last retry fail: requests wraps it in urllib3's MaxRetryError."""
    cause = error.args[0] if error.args else None
    return cause.reason if isinstance(cause, urllib3.exceptions.MaxRetryError) else None


def _timed_out(cause: BaseException | None) -> bool:
    # urllib3 makes a refused connection a ConnectTimeoutError subclass: not a timeout here.
    refused = isinstance(cause, urllib3.exceptions.NewConnectionError)
    return isinstance(cause, urllib3.exceptions.TimeoutError) and not refused


def _reason(error: Exception) -> str:
    """The OS-level reason buried in requests' nested exception text."""
    text = str(_retried(error) or error)
    match = _OS_REASON.search(text)
    if match:
        return match.group(1).strip()
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("CERTIFICATE_VERIFY_FAILED]")[-1].split("(")[0]
        return "certificate verify failed: " + detail.strip(" ')")
    return text[:200]


def _log_lines(lines: Iterator[bytes]) -> Iterator[LogLine]:
    """grpc-gateway's stream: `{"result": {"content": ..., "podName": ...}}` per line, or
    `{"error": {...}}` when the stream broke."""
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"log stream line is not JSON: {line[:80]!r}") from error
        if "error" in item:
            raise HeraException(str(item["error"].get("message", item["error"])))
        result = item.get("result", {})
        yield LogLine(pod=str(result.get("podName", "")), content=str(result.get("content", "")))


def _time(value: m.Time | None) -> datetime | None:
    return value.root if value is not None else None


def _node_view(workflow: str, node: m.NodeStatus) -> NodeView:
    template = node.template_name or (node.template_ref.template if node.template_ref else None)
    template = template or ""
    outputs = {
        parameter.name: parameter.value or ""
        for parameter in (node.outputs.parameters or [] if node.outputs else [])
    }
    return NodeView(
        id=node.id,
        name=node.name,
        display_name=node.display_name or node.name,
        type=node.type,
        template=template,
        phase=node.phase or "Pending",
        started_at=_time(node.started_at),
        finished_at=_time(node.finished_at),
        progress=node.progress,
        message=node.message or "",
        outputs=outputs,
        # Argo's v2 pod names, the same function the local engine names its pods with.
        pod_name=pod_name(workflow, node.name, template) if node.type == "Pod" else None,
    )


def _run_view(workflow: m.Workflow) -> RunView:
    meta = workflow.metadata
    name = meta.name or ""
    status = workflow.status or m.WorkflowStatus()
    nodes = status.nodes or {}
    return RunView(
        name=name,
        namespace=meta.namespace or "",
        phase=status.phase or "Pending",
        created_at=_time(meta.creation_timestamp),
        started_at=_time(status.started_at),
        finished_at=_time(status.finished_at),
        message=status.message or "",
        progress=status.progress,
        labels=dict(meta.labels or {}),
        nodes=tuple(_node_view(name, node) for node in nodes.values()),
    )
