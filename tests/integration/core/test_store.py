"""The artifact store and the embedded S3 server, against a real SeaweedFS process."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ResponseStreamingError
from botocore.response import StreamingBody

from steps.core.errors import BadInput, StorageError
from steps.core.names import Env
from steps.core.store import MAX_ATTEMPTS, READ_SIZE, ArtifactStore, parse_s3_uri
from tests.support.s3 import plain_client
from workflows import s3server
from workflows.s3server import (
    EmbeddedS3,
    read_state,
    start_detached,
    stop_detached,
)

WEED_DEFAULT_PORTS = (8333, 9333, 9340, 8888, 23646, 18333, 19333, 19340, 18888, 33646, 8181)


def weed_pids(data_dir: Path) -> list[int]:
    """Live weed processes serving `data_dir` (from /proc, independent of the module's state)."""
    flag = f"-dir={data_dir.resolve()}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        if flag in args and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def test_file_round_trip_records_and_checks_the_digest(
    store: ArtifactStore, s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    # Larger than the multipart threshold, so the multipart path is the one exercised.
    data = os.urandom(40 * 1024 * 1024 + 123)
    source = tmp_path / "model.ubj"
    source.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()

    assert store.upload_file(source, "models/x/model.ubj") == expected
    head = plain_client(s3_server).head_object(Bucket=store.bucket, Key="models/x/model.ubj")
    assert head["Metadata"] == {"sha256": expected}

    target = tmp_path / "down" / "deeper" / "model.ubj"
    assert store.download_file("models/x/model.ubj", target) == expected
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.ubj"]


class CutOffBody:
    """A GET response body whose connection drops after `limit` bytes."""

    def __init__(self, body: StreamingBody, limit: int) -> None:
        self._body = body
        self._limit = limit

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        sent = 0
        for chunk in self._body.iter_chunks(size):
            if sent + len(chunk) > self._limit:
                yield chunk[: self._limit - sent]
                raise ResponseStreamingError(error="connection reset by peer (injected)")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self._body.close()


def cut_off_gets(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, limit: int, times: int
) -> list[dict[str, Any]]:
    """Make the store's next `times` GETs drop after `limit` bytes; returns every GET's
    arguments as they are made."""
    real_get = store._client.get_object
    calls: list[dict[str, Any]] = []

    def get_object(**kwargs: Any) -> Any:
        calls.append(kwargs)
        response: Any = real_get(**kwargs)
        if len(calls) <= times:
            response["Body"] = CutOffBody(response["Body"], limit)
        return response

    monkeypatch.setattr(store._client, "get_object", get_object)
    return calls


def test_a_download_cut_off_midway_resumes_where_it_stopped(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * READ_SIZE + 5)  # several reads, so the cut falls mid-object
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    digest = store.upload_file(source, "d/data.bin")
    calls = cut_off_gets(store, monkeypatch, limit=READ_SIZE + 100, times=1)

    target = tmp_path / "down" / "data.bin"
    assert store.download_file("d/data.bin", target) == digest
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]
    assert len(calls) == 2
    assert calls[1]["Range"] == f"bytes={READ_SIZE + 100}-"
    assert calls[1]["IfMatch"]  # pinned to the object the first bytes came from


def test_a_download_that_keeps_being_cut_off_fails_and_leaves_no_file(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes("d/data.bin", os.urandom(1000))
    calls = cut_off_gets(store, monkeypatch, limit=100, times=MAX_ATTEMPTS)

    with pytest.raises(StorageError, match=r"d/data\.bin .*connection reset by peer"):
        store.download_file("d/data.bin", tmp_path / "data.bin")
    assert len(calls) == MAX_ATTEMPTS
    assert list(tmp_path.iterdir()) == []


def test_an_object_replaced_while_a_download_resumes_is_refused(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resumed GET must not splice the new object's tail onto the old one's head."""
    old, new = os.urandom(2 * READ_SIZE), os.urandom(2 * READ_SIZE)
    store.put_bytes("d/data.bin", old)
    real_get = store._client.get_object

    def get_then_replace(**kwargs: Any) -> Any:
        response: Any = real_get(**kwargs)
        if "Range" not in kwargs:  # the first GET: the object changes before the resume
            store.put_bytes("d/data.bin", new)
            response["Body"] = CutOffBody(response["Body"], READ_SIZE)
        return response

    monkeypatch.setattr(store._client, "get_object", get_then_replace)
    with pytest.raises(StorageError, match=r"d/data\.bin .*PreconditionFailed"):
        store.download_file("d/data.bin", tmp_path / "data.bin")
    assert list(tmp_path.iterdir()) == []


def test_dir_round_trip_keeps_layout_and_stays_inside_its_prefix(
    store: ArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "bundle"
    (source / "train").mkdir(parents=True)
    (source / "manifest.json").write_text('{"a": 1}')
    (source / "train" / "part-00000.parquet").write_bytes(b"\x00" * 1000)
    sibling = tmp_path / "sibling.txt"
    sibling.write_text("not part of the bundle")

    digests = store.upload_dir(source, "datasets/ab")
    store.upload_file(sibling, "datasets/abc/other.txt")  # shares the string prefix "datasets/ab"

    assert digests == {
        "manifest.json": hashlib.sha256(b'{"a": 1}').hexdigest(),
        "train/part-00000.parquet": hashlib.sha256(b"\x00" * 1000).hexdigest(),
    }
    assert store.list("datasets/ab/") == [
        "datasets/ab/manifest.json",
        "datasets/ab/train/part-00000.parquet",
    ]
    target = tmp_path / "copy"
    assert store.download_dir("datasets/ab", target) == digests
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "manifest.json",
        "train/part-00000.parquet",
    ]
    assert (target / "manifest.json").read_text() == '{"a": 1}'


def test_bytes_and_json_round_trip(store: ArtifactStore) -> None:
    digest = store.put_json("registry/m/stable.json", {"b": [1, 2], "a": "x"})
    assert store.get_json("registry/m/stable.json") == {"a": "x", "b": [1, 2]}
    # Key order does not change the stored bytes, so equal records get equal digests.
    assert store.put_json("other.json", {"a": "x", "b": [1, 2]}) == digest
    assert store.put_bytes("raw", b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert store.get_bytes("raw") == b"abc"
    assert store.exists("raw")
    assert not store.exists("raw2")
    assert store.uri("raw") == f"s3://{store.bucket}/raw"


def test_tampered_object_is_refused_and_leaves_no_file(
    store: ArtifactStore, s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(b"the evaluated model")
    original = store.upload_file(source, "m/model.onnx")
    store.put_bytes("m/small", b"original")
    client = plain_client(s3_server)
    for key in ("m/model.onnx", "m/small"):
        metadata = client.head_object(Bucket=store.bucket, Key=key)["Metadata"]
        client.put_object(Bucket=store.bucket, Key=key, Body=b"swapped", Metadata=metadata)

    target_dir = tmp_path / "down"
    with pytest.raises(StorageError) as failure:
        store.download_file("m/model.onnx", target_dir / "model.onnx")
    message = str(failure.value)
    assert "m/model.onnx" in message
    assert original in message
    assert hashlib.sha256(b"swapped").hexdigest() in message
    assert list(target_dir.iterdir()) == []

    with pytest.raises(StorageError, match=r"m/small .*corrupted"):
        store.get_bytes("m/small")


def test_object_without_digest_is_refused_unless_only_displayed(
    store: ArtifactStore, s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    # Argo's executor writes logs and outputs like this, without our metadata.
    plain_client(s3_server).put_object(Bucket=store.bucket, Key="foreign", Body=b"x")
    for read in (
        lambda: store.download_file("foreign", tmp_path / "foreign"),
        lambda: store.get_bytes("foreign"),
        lambda: store.digest("foreign"),
    ):
        with pytest.raises(StorageError, match="foreign has no sha256 metadata"):
            read()
    assert not (tmp_path / "foreign").exists()
    assert store.get_unverified_bytes("foreign") == b"x"


def test_digest_is_read_without_downloading(store: ArtifactStore) -> None:
    written = store.put_bytes("models/d/model.ubj", b"booster")
    assert store.digest("models/d/model.ubj") == written
    with pytest.raises(StorageError, match=r"models/d/nope .*does not exist"):
        store.digest("models/d/nope")


def test_missing_key_names_bucket_and_key(store: ArtifactStore, tmp_path: Path) -> None:
    where = f"s3://{store.bucket}/models/nope/model.ubj"
    with pytest.raises(StorageError, match=f"{where} .*does not exist"):
        store.download_file("models/nope/model.ubj", tmp_path / "model.ubj")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StorageError, match=f"{where} .*does not exist"):
        store.get_bytes("models/nope/model.ubj")
    with pytest.raises(StorageError, match=f"nothing stored under s3://{store.bucket}/models/"):
        store.download_dir("models/nope", tmp_path / "model")


def test_missing_bucket_is_named(s3_server: EmbeddedS3) -> None:
    store = ArtifactStore(s3_server.endpoint, "no-such-bucket", "mlpipe", "mlpipe-local-secret")
    with pytest.raises(StorageError, match="bucket no-such-bucket does not exist"):
        store.get_bytes("k")


def test_unreachable_endpoint_fails_fast_and_names_it(closed_port: int, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    store = ArtifactStore(endpoint, "bucket", "key", "secret")
    source = tmp_path / "f"
    source.write_bytes(b"x")
    for action in (lambda: store.get_bytes("k"), lambda: store.upload_file(source, "k")):
        started = time.monotonic()
        with pytest.raises(StorageError, match=f"cannot reach S3 endpoint {endpoint}"):
            action()
        assert time.monotonic() - started < 8


def test_wrong_credentials_are_reported(s3_server: EmbeddedS3, store: ArtifactStore) -> None:
    intruder = ArtifactStore(s3_server.endpoint, store.bucket, "mlpipe", "wrong-secret")
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        intruder.put_bytes("k", b"x")


def test_missing_local_file_is_bad_input(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"nope\.parquet"):
        store.upload_file(tmp_path / "nope.parquet", "k")
    with pytest.raises(BadInput, match="not a folder"):
        store.upload_dir(tmp_path / "nope", "p")


def test_from_env_reaches_the_same_bucket(store: ArtifactStore, s3_env: dict[str, str]) -> None:
    store.put_bytes("shared", b"seen by both")
    assert ArtifactStore.from_env(s3_env).get_bytes("shared") == b"seen by both"


@pytest.mark.parametrize(
    "missing", [Env.S3_ENDPOINT, Env.S3_BUCKET, Env.ACCESS_KEY, Env.SECRET_KEY]
)
def test_from_env_names_the_missing_variable(s3_env: dict[str, str], missing: Env) -> None:
    environ = {name: value for name, value in s3_env.items() if name != missing.value}
    with pytest.raises(StorageError, match=f"set {missing.value}"):
        ArtifactStore.from_env(environ)


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://bucket/datasets/abc") == ("bucket", "datasets/abc")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    for bad in ("bucket/key", "s3:///key", "/tmp/data.parquet"):
        with pytest.raises(BadInput, match="not an S3 URI"):
            parse_s3_uri(bad)


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedS3(tmp_path / "s3") as server:
        store = ArtifactStore(server.endpoint, "keep", server.access_key, server.secret_key)
        store.ensure_bucket()
        digest = store.put_bytes("model", b"weights")
    assert weed_pids(tmp_path / "s3") == []
    with EmbeddedS3(tmp_path / "s3") as server:
        store = ArtifactStore(server.endpoint, "keep", server.access_key, server.secret_key)
        assert store.get_bytes("model") == b"weights"
        assert store.put_bytes("model", b"weights") == digest


def test_busy_ports_are_avoided_and_servers_run_side_by_side(
    s3_server: EmbeddedS3, store: ArtifactStore, tmp_path: Path
) -> None:
    with ExitStack() as held:
        # Occupy weed's default ports (those free now): a second server must not need them.
        for port in WEED_DEFAULT_PORTS:
            sock = held.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
            except OSError:
                continue
        with EmbeddedS3(tmp_path / "second") as second:
            assert second.endpoint != s3_server.endpoint
            other = ArtifactStore(second.endpoint, "second", second.access_key, second.secret_key)
            other.ensure_bucket()
            other.put_bytes("k", b"second")
            store.put_bytes("k", b"first")
            assert other.get_bytes("k") == b"second"
            assert store.get_bytes("k") == b"first"
            used = set(second.state().ports)
            assert used.isdisjoint(WEED_DEFAULT_PORTS)
            assert used.isdisjoint(s3_server.state().ports)


@pytest.mark.parametrize("stolen_picks", [1, 2])
def test_a_port_taken_after_the_pick_gets_one_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stolen_picks: int
) -> None:
    """Another process may bind a port between our pick and weed's start: weed then refuses
    to start; the server retries once with new ports, and a second loss is a clear error."""
    thief = socket.socket()
    thief.bind(("127.0.0.1", 0))
    thief.listen()
    taken = thief.getsockname()[1]
    picks: list[dict[str, int]] = []
    real_pick = s3server._free_ports

    def pick_with_theft(count: int) -> dict[str, int]:
        ports = real_pick(count)
        if len(picks) < stolen_picks:
            ports["filer"] = taken
        picks.append(ports)
        return ports

    monkeypatch.setattr(s3server, "_free_ports", pick_with_theft)
    with thief:
        if stolen_picks == 1:
            with EmbeddedS3(tmp_path / "s3") as server:
                assert taken not in server.state().ports
                assert len(picks) == 2
        else:
            with pytest.raises(StorageError, match=f"port {taken} for Filer .*not available"):
                EmbeddedS3(tmp_path / "s3").start()
    assert weed_pids(tmp_path / "s3") == []


def test_startup_timeout_is_reported_and_leaves_no_process(tmp_path: Path) -> None:
    server = EmbeddedS3(tmp_path / "s3", startup_timeout=0)
    with pytest.raises(StorageError, match=r"did not answer .* within 0 s; .*weed\.log"):
        server.start()
    assert weed_pids(tmp_path / "s3") == []


def test_detached_server_starts_once_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "s3"
    assert read_state(data_dir) is None
    assert stop_detached(data_dir) is False

    state = start_detached(data_dir)
    try:
        assert weed_pids(data_dir) == [state.pid]
        assert read_state(data_dir) == state
        assert start_detached(data_dir) == state  # `store up` twice reuses the running server
        with pytest.raises(StorageError, match=f"already served by weed \\(pid {state.pid}\\)"):
            EmbeddedS3(data_dir).start()
        store = ArtifactStore(state.endpoint, "detached", state.access_key, state.secret_key)
        store.ensure_bucket()
        store.put_json("probe.json", {"ok": True})
        assert store.get_json("probe.json") == {"ok": True}
    finally:
        assert stop_detached(data_dir) is True
    assert weed_pids(data_dir) == []
    assert read_state(data_dir) is None
    assert not any(Path("/tmp").glob(f"seaweedfs-*-{state.ports[0]}.sock"))


def test_a_second_server_on_the_same_folder_is_refused_by_name(tmp_path: Path) -> None:
    """Two `mlpipe run` in one folder: the second gets one line naming the first's pid and
    the way out, not weed's stack dump about its store lock."""
    with EmbeddedS3(tmp_path / "s3") as first:
        with pytest.raises(StorageError) as refused:
            EmbeddedS3(tmp_path / "s3").start()
        message = str(refused.value)
        assert f"another mlpipe run (pid {os.getpid()}) is using {tmp_path / 's3'}" in message
        assert "--set storage.data_dir=" in message
        assert weed_pids(tmp_path / "s3") == [first.state().pid]
    with EmbeddedS3(tmp_path / "s3"):  # released with the first server
        pass


def test_a_weed_that_ignores_sigterm_after_its_filer_stopped_is_killed_soon(
    tmp_path: Path,
) -> None:
    """The hang seen in pipeline runs: the filer reports stopped, the volume server ignores
    SIGTERM. Its data is on disk by then, so stopping does not wait out STOP_TIMEOUT."""
    log = tmp_path / "weed.log"
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time, sys\n"
            "def on_term(*_):\n"
            f"    open({str(log)!r}, 'a').write('  Filer        stopped   1.0s\\n')\n"
            "signal.signal(signal.SIGTERM, on_term)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    log.write_text("  Filer        ready     0.2s\n")
    started = time.monotonic()
    s3server.stop_weed(stubborn.pid, log)
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert time.monotonic() - started < s3server.STOP_TIMEOUT / 2
