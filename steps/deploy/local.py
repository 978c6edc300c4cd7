"""The local canary backend: model servers (`python -m serving`) on loopback.

Stable is one long-lived server: the first deploy starts it detached (its own session, so
it outlives the deploy step and the local engine's process groups) and records its pid and
port in `<state_dir>/server.json`; later deploys find it there and reuse it. The files it
serves are copied to `<state_dir>/models/<digest>/`, because the step's workspace and the
embedded S3 server of a run are both gone once the run ends. Promote hot-loads the new
version into it through the repository extension, so clients of stable never see a gap.

The canary is a child server on a free port that lives only during the deploy step; its pid is
recorded in `<state_dir>/canary-<model>.json`, so a repair stops a canary whose deploy step
was killed (steps/deploy/promotion.py). Restoring a version hot-loads it back from its local
copy, or from the registry (verified) when stable.json names it. There is
no router process: `hold()` itself is the traffic, test rows sent as OIP requests to one
server or the other in the proportion of the current split, exactly as a weighted route
would spread them. Rows are encoded with *stable's* feature schema: clients speak the
contract of the model serving now, and a candidate that changed it must fail them.
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import orjson
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from steps.core.errors import BadInput, GateFailed, StorageError
from steps.core.model_registry import read_verified
from steps.core.names import Artifact, ModelFile
from steps.core.processes import is_alive, process_arguments, terminate
from steps.core.specs import DeploySpec
from steps.core.store import ArtifactStore
from steps.data.features import encode, load_schema
from steps.deploy.backend import ModelVersion, Outcomes, Scrape

STATE_FILE = "server.json"
STOP_TIMEOUT_SECONDS = 10.0
STDERR_TAIL_LINES = 20
ROWS_PER_REQUEST = 8
"""Rows in each traffic request: enough scores per request for a stable PSI estimate."""
REQUEST_TIMEOUT_SECONDS = 30.0


class ServerState(BaseModel):
    """The detached stable server, as `<state_dir>/server.json` records it."""

    pid: int
    host: str
    port: int
    log: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


# --- one model server process ------------------------------------------------------------


def serve_command(
    model: Path, schema: Path, name: str, digest: str, host: str, port: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "serving",
        "--model",
        str(model),
        "--schema",
        str(schema),
        "--name",
        name,
        "--digest",
        digest,
        "--host",
        host,
        "--port",
        str(port),
    ]


def free_port(host: str) -> int:
    """A port the OS says is free now (it could be taken before the server binds it: then
    the server fails to start and its stderr says so)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def local_server(command: list[str], base_url: str, timeout: float) -> Iterator[str]:
    """Run a model server until the block ends; yields its base URL once ready."""
    # stderr goes to a file, not a pipe: nobody reads a pipe while the server runs, and a
    # full pipe would block the server mid-request.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_until_ready(process, base_url, timeout, stderr)
            yield base_url
        except httpx.HTTPError as error:
            raise GateFailed(
                f"model server at {base_url} failed: {error}: {tail(stderr)}"
            ) from None
        finally:
            stop(process)


def wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, timeout: float, stderr: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    # trust_env=False here and below: a proxy from the environment must not sit between
    # this process and a server on loopback.
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            code = process.poll()
            if code is not None:
                raise GateFailed(
                    f"model server exited with code {code} before it was ready at {base_url}: "
                    f"{tail(stderr)}"
                )
            try:
                if client.get(f"{base_url}/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise GateFailed(
                    f"model server at {base_url} not ready after {timeout:g} s: {tail(stderr)}"
                )
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets uvicorn finish in-flight requests; SIGKILL only if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    lines = stream.read().decode(errors="replace").strip().splitlines()
    return " | ".join(lines[-STDERR_TAIL_LINES:]) or "(no output on stderr)"


# --- the detached stable server ------------------------------------------------------------


def read_server(state_dir: Path) -> ServerState | None:
    """The stable server recorded in `state_dir` if its process still runs (else None and the
    stale record is removed)."""
    path = state_dir / STATE_FILE
    try:
        state = ServerState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValidationError as error:
        raise BadInput(f"unreadable serving state file {path}: {error}") from None
    if is_alive(state.pid):
        return state
    path.unlink(missing_ok=True)
    return None


def stop_server(state_dir: Path) -> bool:
    """Stop the detached stable server of `state_dir`; False if none was running."""
    state = read_server(state_dir)
    if state is None:
        return False
    terminate(state.pid, STOP_TIMEOUT_SECONDS)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def start_detached(command: list[str], state_dir: Path, host: str, port: int) -> ServerState:
    log = state_dir / "server.log"
    with log.open("ab") as stream:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
            start_new_session=True,
        )
    state = ServerState(pid=process.pid, host=host, port=port, log=str(log))
    _write_atomically(state_dir / STATE_FILE, state.model_dump_json(indent=2))
    return state


# --- the backend ---------------------------------------------------------------------------


class CanaryState(BaseModel):
    """The canary server of a deploy in progress, as `<state_dir>/canary-<model>.json` records
    it, so a repair can stop a canary whose deploy step was killed."""

    pid: int
    digest: str


class LocalBackend:
    """CanaryBackend on this machine; see the module docstring."""

    kind = "local"

    def __init__(
        self,
        spec: DeploySpec,
        store: ArtifactStore,
        model_name: str,
        traffic: pd.DataFrame | None = None,
        labels: NDArray[np.int8] | None = None,
        canary_args: Sequence[str] = (),
    ) -> None:
        """`traffic`: test rows (raw columns) to send in `hold()`, needed for a canary only,
        and their `labels` (the analysis then holds each track's AUC to its evaluation);
        `canary_args`: extra `python -m serving` options for the canary only (a server
        setting under test)."""
        self._spec = spec
        self._store = store
        self._name = model_name
        self._traffic = traffic
        self._labels = labels
        self._canary_args = list(canary_args)
        self._state_dir = Path(spec.state_dir).expanduser()
        self._stable: str | None = None
        """The digest stable serves, once `restore` or `promote` made sure of it."""
        self._server: ServerState | None = None
        self._rows: NDArray[np.float32] | None = None
        self._input_name = ""
        self._canary: subprocess.Popen[bytes] | None = None
        self._canary_stderr: IO[bytes] | None = None
        self._canary_url = ""
        self._percent = 0
        self._sent = 0
        self._cursors = {True: 0, False: 0}
        """Per track (to canary?), the next test row: each track cycles through the whole
        split, so two models that score alike show alike histograms."""
        self._scored: dict[bool, list[tuple[NDArray[np.float64], NDArray[np.intp]]]] = {
            True: [],
            False: [],
        }
        """Per track, each answered request's scores and the test rows they belong to."""

    # The stable track -----------------------------------------------------------------

    def restore(self, digest: str | None) -> None:
        self._percent = 0
        self._stop_canary()
        self._stop_recorded_canary()
        if digest is None:
            self._unserve()
        else:
            self._serve_as_stable(digest, self._files(digest))
        self._stable = digest

    def served(self) -> str | None:
        server = read_server(self._state_dir)
        if server is None:
            return None
        with _client(timeout=5.0) as client:
            try:
                answer = client.get(f"{server.base_url}/v2/models/{self._name}")
            except httpx.TransportError:
                return None
        if answer.status_code != 200:
            return None
        versions = answer.json().get("versions") or [None]
        return str(versions[0]) if versions[0] else None

    def _files(self, digest: str) -> tuple[Path, Path]:
        """The version's files in the local copy, else fetched from the registry, which can
        only give (verified) the version stable.json names."""
        folder = self._state_dir / "models" / digest
        onnx, schema = folder / Artifact.ONNX.filename, folder / ModelFile.FEATURE_SCHEMA.value
        if onnx.is_file() and schema.is_file():
            return onnx, schema
        with tempfile.TemporaryDirectory() as tmp:
            verified = read_verified(self._store, self._name, Path(tmp))
            if verified is None or verified.version.digest != digest:
                raise StorageError(
                    f"no copy of {self._name} {digest[:12]} in {folder}, and the registry's "
                    f"stable version is {verified.version.digest[:12] if verified else 'none'}"
                )
            return self._install(digest, (verified.onnx, verified.schema))

    def _install(self, digest: str, files: tuple[Path, Path]) -> tuple[Path, Path]:
        """Copy a version's files where the stable server can (re)load them any time."""
        folder = self._state_dir / "models" / digest
        folder.mkdir(parents=True, exist_ok=True)
        targets = (folder / Artifact.ONNX.filename, folder / ModelFile.FEATURE_SCHEMA.value)
        for source, target in zip(files, targets, strict=True):
            if source.resolve() != target.resolve():
                tmp = target.with_name(target.name + ".tmp")
                shutil.copyfile(source, tmp)
                tmp.replace(target)
        return targets

    def _serve_as_stable(self, digest: str, files: tuple[Path, Path]) -> str:
        """Start the stable server with this version, or hot-load it into the running one
        (in-flight requests finish on the version they started with)."""
        self._state_dir.mkdir(parents=True, exist_ok=True)
        server = read_server(self._state_dir)
        if server is None:
            port = self._spec.port or free_port(self._spec.host)
            command = serve_command(*files, self._name, digest, self._spec.host, port)
            server = start_detached(command, self._state_dir, self._spec.host, port)
            self._server = server
            self._wait_for_stable(server)
            return server.base_url
        self._server = server
        with _client() as client:
            answer = client.get(f"{server.base_url}/v2/models/{self._name}")
            if answer.status_code == 200 and answer.json().get("versions") == [digest]:
                return server.base_url
            loaded = client.post(
                f"{server.base_url}/v2/repository/models/{self._name}/load",
                json={"parameters": {"model": str(files[0]), "schema": str(files[1]),
                                     "digest": digest}},
            )  # fmt: skip
        if loaded.status_code != 200 or loaded.json().get("digest") != digest:
            raise GateFailed(
                f"stable server at {server.base_url} did not load {self._name} {digest}: "
                f"{loaded.status_code} {loaded.text[:500]}"
            )
        return server.base_url

    def _unserve(self) -> None:
        """The stable server stops serving this model: stopped if it serves nothing else."""
        server = read_server(self._state_dir)
        if server is None:
            return
        with _client() as client:
            index = client.post(f"{server.base_url}/v2/repository/index", json={})
            if index.status_code != 200:
                raise GateFailed(
                    f"stable server at {server.base_url}: index answered {index.status_code}"
                )
            names = [str(model["name"]) for model in index.json()]
            if self._name not in names:
                return
            if names == [self._name]:
                stop_server(self._state_dir)
                return
            unloaded = client.post(f"{server.base_url}/v2/repository/models/{self._name}/unload")
        if unloaded.status_code != 200:
            raise GateFailed(
                f"stable server at {server.base_url} serves {', '.join(names)}; unloading "
                f"{self._name} answered {unloaded.status_code} {unloaded.text[:300]}"
            )

    def _wait_for_stable(self, server: ServerState) -> None:
        deadline = time.monotonic() + self._spec.startup_timeout_seconds
        with _client(timeout=1.0) as client:
            while True:
                try:
                    if client.get(f"{server.base_url}/v2/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if not is_alive(server.pid) or time.monotonic() > deadline:
                    (self._state_dir / STATE_FILE).unlink(missing_ok=True)
                    log = Path(server.log).read_text(errors="replace").strip().splitlines()
                    raise GateFailed(
                        f"stable model server at {server.base_url} did not become ready: "
                        + " | ".join(log[-STDERR_TAIL_LINES:])
                    )
                time.sleep(0.05)

    # CanaryBackend ----------------------------------------------------------------------

    def start_canary(self, version: ModelVersion) -> None:
        if self._stable is None or self._server is None:
            raise BadInput("no stable version serving: restore() it before a canary")
        # Rows are encoded with stable's schema: clients speak the contract serving now.
        if self._traffic is None or self._traffic.empty:
            raise BadInput("no test rows to send as canary traffic")
        self._rows = encode(self._traffic, load_schema(self._files(self._stable)[1]))
        self._scored = {True: [], False: []}
        with _client() as client:
            metadata = ok_json(client.get(f"{self._server.base_url}/v2/models/{self._name}"))
        self._input_name = str(metadata["inputs"][0]["name"])
        port = free_port(self._spec.host)
        self._canary_url = f"http://{self._spec.host}:{port}"
        command = serve_command(
            version.onnx, version.schema, version.name, version.digest, self._spec.host, port
        )
        # Lives as long as the canary process; _stop_canary closes it.
        self._canary_stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._canary = subprocess.Popen(
            [*command, *self._canary_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._canary_stderr,
        )
        record = CanaryState(pid=self._canary.pid, digest=version.digest)
        _write_atomically(self._canary_file, record.model_dump_json())
        wait_until_ready(
            self._canary,
            self._canary_url,
            self._spec.startup_timeout_seconds,
            self._canary_stderr,
        )

    def route(self, canary_percent: int) -> None:
        self._percent = canary_percent

    def hold(self, seconds: float) -> None:
        """Send traffic for `seconds`, and on until the canary got `min_requests` of it: the
        traffic is ours to make, so a busy machine must not starve the verdict of evidence."""
        assert self._rows is not None and self._server is not None
        path = f"/v2/models/{self._name}/infer"
        deadline = time.monotonic() + seconds
        wanted = self._spec.canary.min_requests if self._percent > 0 else 0
        to_canary_count = 0
        with _client() as client:
            while time.monotonic() < deadline or to_canary_count < wanted:
                # Weighted round robin: after n requests, exactly floor(n * p / 100) went to
                # the canary, so even a short hold gets the configured share.
                to_canary = (self._sent + 1) * self._percent // 100 > (
                    self._sent * self._percent // 100
                )
                base_url = self._canary_url if to_canary else self._server.base_url
                indices, request = self._request(to_canary)
                try:
                    response = client.post(
                        base_url + path,
                        content=request,
                        headers={"content-type": "application/json"},
                    )
                except httpx.TransportError as error:
                    track = "canary" if to_canary else "stable"
                    raise GateFailed(
                        f"{track} server at {base_url} stopped answering: {error}"
                    ) from None
                if response.status_code == 200:
                    scores = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float64)
                    self._scored[to_canary].append((scores, indices))
                self._sent += 1
                to_canary_count += to_canary

    def _request(self, to_canary: bool) -> tuple[NDArray[np.intp], bytes]:
        """The next rows of the track (their test-split indices) and the request body."""
        assert self._rows is not None
        start = self._cursors[to_canary]
        self._cursors[to_canary] = (start + ROWS_PER_REQUEST) % len(self._rows)
        indices = np.arange(start, start + ROWS_PER_REQUEST) % len(self._rows)
        rows = self._rows[indices]
        tensor = {"name": self._input_name, "datatype": "FP32", "shape": list(rows.shape)}
        body = orjson.dumps(
            {"inputs": [{**tensor, "data": rows}]}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        return indices, body

    def outcomes(self) -> Outcomes | None:
        """Labels arrive here with the traffic: the test split's own."""
        if self._labels is None:
            return None
        labels = self._labels

        def track(to_canary: bool) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
            scored = self._scored[to_canary]
            if not scored:
                return np.empty(0), np.empty(0, dtype=np.int8)
            scores = np.concatenate([s for s, _ in scored])
            return scores, labels[np.concatenate([i for _, i in scored])]

        (canary_scores, canary_labels), (stable_scores, stable_labels) = track(True), track(False)
        return Outcomes(canary_scores, canary_labels, stable_scores, stable_labels)

    def scrape(self) -> Scrape:
        assert self._server is not None
        with _client() as client:
            stable = [_metrics(client, self._server.base_url, "stable")]
            canary = [_metrics(client, self._canary_url, "canary")] if self._canary else []
        return Scrape(stable=stable, canary=canary)

    def promote(self, version: ModelVersion) -> str:
        files = self._install(version.digest, (version.onnx, version.schema))
        base_url = self._serve_as_stable(version.digest, files)
        self._stable = version.digest
        self._stop_canary()
        return base_url

    @property
    def _canary_file(self) -> Path:
        return self._state_dir / f"canary-{self._name}.json"

    def _stop_canary(self) -> None:
        if self._canary is not None:
            stop(self._canary)
            self._canary = None
            self._canary_file.unlink(missing_ok=True)
        if self._canary_stderr is not None:
            self._canary_stderr.close()
            self._canary_stderr = None

    def _stop_recorded_canary(self) -> None:
        """Stop the canary a killed deploy step left running (its record names it)."""
        try:
            record = CanaryState.model_validate_json(self._canary_file.read_text())
        except FileNotFoundError:
            return
        except ValidationError as error:
            raise BadInput(f"unreadable canary state file {self._canary_file}: {error}") from None
        # The pid may have been reused since: only a server started for this digest is ours.
        if record.digest in process_arguments(record.pid):
            terminate(record.pid, STOP_TIMEOUT_SECONDS)
        self._canary_file.unlink(missing_ok=True)


def _client(timeout: float = REQUEST_TIMEOUT_SECONDS) -> httpx.Client:
    # trust_env=False: a proxy from the environment must not sit in front of loopback.
    return httpx.Client(timeout=timeout, trust_env=False)


def _metrics(client: httpx.Client, base_url: str, track: str) -> str:
    try:
        response = client.get(f"{base_url}/metrics")
    except httpx.TransportError as error:
        raise GateFailed(f"{track} server at {base_url}: /metrics unreachable: {error}") from None
    if response.status_code != 200:
        raise GateFailed(f"{track} server at {base_url}: /metrics answered {response.status_code}")
    return response.text


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def ok_json(response: httpx.Response, what: str = "") -> dict[str, Any]:
    """The body of a 200 answer; anything else fails the deploy, naming the request."""
    if response.status_code != 200:
        raise GateFailed(
            f"{what + ' ' if what else ''}{response.request.method} {response.request.url} "
            f"answered {response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body
