"""The model server as a client sees it: real `python -m serving` processes on free ports,
spoken to over real HTTP (httpx, raw sockets and the stock `tritonclient.http`), checked
against onnxruntime run directly on the same file."""

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import numpy as np
import onnx
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from steps.core.store import ArtifactStore
from steps.data.features import FeatureSchema, encode, save_schema
from steps.quantize.step import ONNX_INPUT
from tests.support.serving import (
    NAME,
    SCHEMA_FILE,
    ModelFiles,
    Server,
    infer,
    matrix_body,
    metrics,
    reference,
    refused,
    sample,
    scores,
    serve,
)
from workflows.s3server import EmbeddedS3


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "mlpipe-serving" and server["version"]
    assert server["extensions"] == ["binary_tensor_data", "model_repository"]


@pytest.mark.parametrize("versioned", [False, True])
def test_model_metadata_and_readiness(
    client: httpx.Client, model: ModelFiles, versioned: bool
) -> None:
    path = f"/v2/models/{NAME}" + (f"/versions/{model.digest}" if versioned else "")
    metadata = client.get(path).json()
    assert metadata["name"] == NAME
    assert metadata["versions"] == [model.digest]  # the version defaults to the sha256
    assert metadata["platform"] == "onnxruntime_onnx"
    features = model.schema.features
    # The model-ready [N, F] matrix, or one tensor per feature, in the data's column order,
    # typed as a client holds the data.
    matrix, *per_feature = metadata["inputs"]
    assert per_feature == [
        {
            "name": f.name,
            "datatype": "BYTES" if f.kind == "categorical" else "FP32",
            "shape": [-1],
            "parameters": {"form": "per_feature", "column": column},
        }
        for column, f in enumerate(features)
    ]
    assert matrix == {
        "name": ONNX_INPUT,
        "datatype": "FP32",
        "shape": [-1, len(features)],
        "parameters": {"form": "matrix", "features": model.schema.names},
    }
    assert metadata["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
    # The feature schema the model was trained on, as written beside the model.
    assert metadata["parameters"]["feature_schema"] == {
        "features": [
            {"name": f.name, "kind": f.kind.value, "categories": f.categories, "nullable": True}
            for f in features
        ]
    }
    assert client.get(path + "/ready").json() == {"name": NAME, "ready": True}


@pytest.mark.parametrize(
    ("rows", "nested", "datatype", "versioned"),
    [
        (1, False, "FP32", False),
        (20, False, "FP32", True),
        (20, True, "FP64", False),
        (1000, False, "FP32", False),  # above the inline limit: scored on a worker thread
    ],
)
def test_matrix_infer_matches_onnxruntime(
    client: httpx.Client,
    model: ModelFiles,
    frame: pd.DataFrame,
    rows: int,
    nested: bool,
    datatype: str,
    versioned: bool,
) -> None:
    matrix = encode(pd.concat([frame] * 2).head(rows), model.schema)
    assert np.isnan(matrix).any() or rows == 1  # missing values are part of the test
    path = f"/v2/models/{NAME}" + (f"/versions/{model.digest}" if versioned else "") + "/infer"
    body = infer(client, matrix_body(matrix, nested=nested, datatype=datatype), path)
    assert body["model_name"] == NAME and body["model_version"] == model.digest
    assert body["id"] == "req-1"
    assert body["outputs"][0]["shape"] == [rows]
    served = scores(body)
    assert np.max(np.abs(served - reference(model.onnx, matrix))) <= 1e-6
    assert served.min() >= 0 and served.max() <= 1


def test_one_tensor_per_feature_with_string_categories(
    client: httpx.Client, model: ModelFiles, frame: pd.DataFrame
) -> None:
    """Raw rows, as a client holds them: numbers per numeric column (INT64 where they are
    whole), category names per categorical column, the server encoding them exactly as
    training did; an unknown category and a missing one both become NaN."""
    rows = frame.head(6).copy()
    rows.loc[rows.index[0], "region"] = "atlantis"  # never seen in training
    rows.loc[rows.index[1], "plan"] = None
    inputs = []
    for feature in model.schema.features:
        column = rows[feature.name]
        if feature.kind == "categorical":
            data, datatype = [None if pd.isna(v) else v for v in column], "BYTES"
        elif feature.name == "support_calls":
            data = [None if pd.isna(v) else int(v) for v in column]
            datatype = "INT64"
        else:
            data, datatype = [None if pd.isna(v) else float(v) for v in column], "FP64"
        inputs.append({"name": feature.name, "datatype": datatype, "shape": [6], "data": data})
    inputs.reverse()  # matched by name, not position
    served = scores(infer(client, {"inputs": inputs}))
    expected = reference(model.onnx, encode(rows, model.schema))
    assert np.max(np.abs(served - expected)) <= 1e-6
    # The same raw values as one BYTES [N, F] tensor (numbers written as text).
    text = [
        None if pd.isna(v) else str(v)
        for row in rows[model.schema.names].itertuples(False)
        for v in row
    ]
    body = {"inputs": [{"name": ONNX_INPUT, "datatype": "BYTES", "shape": [6, 5], "data": text}]}
    assert np.max(np.abs(scores(infer(client, body)) - expected)) <= 1e-6


def test_tritonclient_works_unchanged(
    server: Server, model: ModelFiles, frame: pd.DataFrame
) -> None:
    """The stock client, defaults and all: binary tensors (its default) and JSON ones."""
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(NAME) and client.is_model_ready(NAME, model.digest)
        assert not client.is_model_ready("nope")
        assert client.get_server_metadata()["name"] == "mlpipe-serving"
        assert client.get_model_metadata(NAME)["versions"] == [model.digest]
        assert client.get_model_repository_index() == [
            {"name": NAME, "version": model.digest, "state": "READY", "reason": ""}
        ]
        matrix = encode(frame.head(9), model.schema)
        assert np.isnan(matrix).any()  # JSON mode: tritonclient writes the token NaN
        expected = reference(model.onnx, matrix)
        for binary in (True, False):
            tensor = triton.InferInput(ONNX_INPUT, list(matrix.shape), "FP32")
            tensor.set_data_from_numpy(matrix, binary_data=binary)
            outputs = [triton.InferRequestedOutput("probability", binary_data=binary)]
            for requested in (None, outputs):
                result = client.infer(NAME, [tensor], outputs=requested)
                assert np.max(np.abs(result.as_numpy("probability") - expected)) <= 1e-6
        # One tensor per feature, categories as binary BYTES.
        columns = []
        for feature in model.schema.features:
            values = frame[feature.name].head(9)
            if feature.kind == "categorical":
                array = np.array([b"" if pd.isna(v) else v.encode() for v in values], dtype=object)
                column = triton.InferInput(feature.name, [9], "BYTES")
            else:
                array = values.to_numpy(dtype=np.float64)
                column = triton.InferInput(feature.name, [9], "FP64")
            column.set_data_from_numpy(array)
            columns.append(column)
        result = client.infer(NAME, columns)
        assert np.max(np.abs(result.as_numpy("probability") - expected)) <= 1e-6
        with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
            client.infer("nope", columns)
    finally:
        client.close()


def _valid(frame: pd.DataFrame, model: ModelFiles) -> dict:
    return matrix_body(encode(frame.head(2), model.schema))


def _with_input(body: dict, **changes: object) -> dict:
    return {**body, "inputs": [{**body["inputs"][0], **changes}]}


def _columns(frame: pd.DataFrame, model: ModelFiles, rows: int = 2) -> list[dict]:
    return [
        {
            "name": f.name,
            "datatype": "BYTES" if f.kind == "categorical" else "FP64",
            "shape": [rows],
            "data": [None if pd.isna(v) else v for v in frame[f.name].head(rows)],
        }
        for f in model.schema.features
    ]


@pytest.mark.parametrize(
    ("case", "status", "fragment"),
    [
        ("unknown model", 404, "unknown model 'nope'; this server serves ['churn']"),
        ("unknown version", 404, "no version 'v9'"),
        ("unknown route", 404, "unknown route: GET /v2/nothing/here"),
        ("wrong method", 405, "method GET not allowed"),
        ("wrong shape", 400, "expected [N, {width}]"),
        ("too few values", 400, "needs {values} values"),
        ("ragged rows", 400, "must be numbers"),
        ("wrong datatype", 400, "datatype 'INT8'; supported: FP32, FP64, INT64, BYTES"),
        ("fractional INT64", 400, "INT64 but holds fractional numbers"),
        ("text values", 400, "must be numbers"),
        ("oversized batch", 400, "batch of 1025 rows exceeds the server's max batch size of 1024"),
        ("empty batch", 400, "at least one row"),
        ("unknown input", 400, "unknown: ['x']"),
        ("missing column", 400, "missing: ['plan']"),
        ("columns of different lengths", 400, "the same N"),
        ("category as a number in BYTES", 400, "values must be strings"),
        ("text for a numeric feature", 400, "'tenure_months' is numeric; 'long' is not a number"),
        ("no inputs", 400, "'inputs' must be a non-empty list"),
        ("unknown output", 400, "may only request 'probability'"),
        ("binary size mismatch", 400, "declare 8 bytes of binary data, the body carries 0"),
        ("compressed body", 400, "Content-Encoding 'gzip' is not supported"),
        ("malformed JSON", 400, "malformed JSON"),
        ("not an object", 400, "must be a JSON object"),
        ("load of an unknown model", 404, "unknown model 'other'"),
        ("load with a wrong parameter", 400, "load parameters: uri: Extra inputs"),
        ("load with a bad name", 400, "model name 'no way'"),
    ],
)
def test_bad_requests_get_an_error_object(
    client: httpx.Client,
    model: ModelFiles,
    frame: pd.DataFrame,
    case: str,
    status: int,
    fragment: str,
) -> None:
    body = _valid(frame, model)
    width = len(model.schema.features)
    fragment = fragment.format(width=width, values=2 * width)
    path = f"/v2/models/{NAME}/infer"
    columns = _columns(frame, model)
    oversized = matrix_body(np.zeros((1025, width), dtype=np.float32))
    requests: dict[str, tuple[str, str, object, dict[str, str]]] = {
        "unknown model": ("POST", "/v2/models/nope/infer", body, {}),
        "unknown version": ("GET", f"/v2/models/{NAME}/versions/v9/ready", None, {}),
        "unknown route": ("GET", "/v2/nothing/here", None, {}),
        "wrong method": ("GET", path, None, {}),
        "wrong shape": ("POST", path, _with_input(body, shape=[2, width + 1]), {}),
        "too few values": ("POST", path, _with_input(body, data=[0.5] * (2 * width - 1)), {}),
        "ragged rows": ("POST", path, _with_input(body, data=[[0.5] * width, [0.5]]), {}),
        "wrong datatype": ("POST", path, _with_input(body, datatype="INT8"), {}),
        "fractional INT64": ("POST", path, _with_input(body, datatype="INT64"), {}),
        "text values": ("POST", path, _with_input(body, data=["a"] * (2 * width)), {}),
        "oversized batch": ("POST", path, oversized, {}),
        "empty batch": ("POST", path, _with_input(body, shape=[0, width], data=[]), {}),
        "unknown input": ("POST", path, _with_input(body, name="x"), {}),
        "missing column": ("POST", path, {"inputs": columns[:-1]}, {}),
        "columns of different lengths": (
            "POST",
            path,
            {"inputs": [*columns[:-1], _columns(frame, model, rows=3)[-1]]},
            {},
        ),
        "category as a number in BYTES": (
            "POST",
            path,
            {"inputs": [*columns[:-1], {**columns[-1], "data": [1, 2]}]},
            {},
        ),
        "text for a numeric feature": (
            "POST",
            path,
            {"inputs": [{**columns[0], "datatype": "BYTES", "data": ["long", "2"]}, *columns[1:]]},
            {},
        ),
        "no inputs": ("POST", path, {"inputs": []}, {}),
        "unknown output": ("POST", path, {**body, "outputs": [{"name": "label"}]}, {}),
        "binary size mismatch": (
            "POST",
            path,
            _with_input(body, data=None, parameters={"binary_data_size": 8}),
            {},
        ),
        "compressed body": ("POST", path, body, {"content-encoding": "gzip"}),
        "malformed JSON": ("POST", path, b'{"inputs": [{"name": ', {}),
        "not an object": ("POST", path, b"[1, 2]", {}),
        "load of an unknown model": ("POST", "/v2/repository/models/other/load", None, {}),
        "load with a wrong parameter": (
            "POST",
            f"/v2/repository/models/{NAME}/load",
            {"parameters": {"uri": "x.onnx"}},
            {},
        ),
        "load with a bad name": ("POST", "/v2/repository/models/no way/load", None, {}),
    }
    method, target, payload, headers = requests[case]
    if isinstance(payload, bytes):
        response = client.request(method, target, content=payload, headers=headers)
    else:
        response = client.request(method, target, json=payload, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert list(error) == ["error"] and fragment in error["error"], error
    assert "Traceback" not in response.text
    # The server is still healthy and serving the same model after a bad request.
    assert client.get(f"/v2/models/{NAME}").json()["versions"] == [model.digest]


def test_metrics_count_requests_latency_batches_and_scores(
    client: httpx.Client, model: ModelFiles, frame: pd.DataFrame
) -> None:
    labels = {"model": NAME, "version": model.digest}
    before = metrics(client)
    sent = [encode(frame.iloc[i : i + 1 + i], model.schema) for i in range(4)]  # 1..4 rows
    served = np.concatenate([scores(infer(client, matrix_body(rows))) for rows in sent])
    assert client.post(f"/v2/models/{NAME}/infer", content=b"{").status_code == 400
    assert client.post("/v2/models/nope/infer", json={}).status_code == 404
    after = metrics(client)

    def delta(name: str, **extra: str) -> float:
        return sample(after, name, **extra) - sample(before, name, **extra)

    assert delta("mlpipe_inference_requests_total", **labels, status="200") == 4
    assert delta("mlpipe_inference_requests_total", **labels, status="400") == 1
    assert delta("mlpipe_inference_requests_total", model="", version="", status="404") == 1
    assert delta("mlpipe_inference_request_duration_seconds_count", **labels) == 5
    assert delta("mlpipe_inference_request_duration_seconds_sum", **labels) > 0
    assert delta("mlpipe_inference_batch_size_sum", **labels) == 1 + 2 + 3 + 4
    # The score histogram (what canary PSI compares): every row, in buckets of 0.05.
    assert delta("mlpipe_inference_score_count", **labels) == len(served)
    assert delta("mlpipe_inference_score_sum", **labels) == pytest.approx(served.sum(), rel=1e-5)
    for bound in (0.05, 0.5, 1.0):
        assert delta("mlpipe_inference_score_bucket", **labels, le=str(bound)) == np.sum(
            served <= bound
        )
    assert sample(after, "mlpipe_model_info", **labels, digest=model.digest) == 1
    assert sample(after, "process_resident_memory_bytes") > 0


def test_batching_merges_concurrent_requests(model: ModelFiles, frame: pd.DataFrame) -> None:
    """Concurrent requests inside the batch window share one onnxruntime call, and each
    gets exactly its own rows' scores back."""
    matrix = encode(frame.head(24), model.schema)
    expected = reference(model.onnx, matrix)
    parts = [matrix[i : i + 3] for i in range(0, 24, 3)]  # 8 requests of 3 rows
    with (
        serve(model.onnx, "--max-batch-wait-ms", "200", "--max-batch-size", "64") as running,
        httpx.Client(base_url=running.url, timeout=10) as client,
    ):
        barrier = threading.Barrier(len(parts))

        def send(rows: np.ndarray) -> np.ndarray:
            barrier.wait()
            return scores(infer(client, matrix_body(rows)))

        with ThreadPoolExecutor(len(parts)) as pool:
            answers = list(pool.map(send, parts))
        values = metrics(client)
        too_big = client.post(
            f"/v2/models/{NAME}/infer", json=matrix_body(np.zeros((65, 5), np.float32))
        )
    assert np.max(np.abs(np.concatenate(answers) - expected)) <= 1e-6
    labels = {"model": NAME, "version": model.digest}
    batches = sample(values, "mlpipe_inference_batch_size_count", **labels)
    assert sample(values, "mlpipe_inference_batch_size_sum", **labels) == 24
    assert batches < len(parts) / 2, f"{len(parts)} concurrent requests took {batches} batches"
    # Each request has 3 rows: a batch of more than 4 merged several.
    assert sample(values, "mlpipe_inference_batch_size_bucket", **labels, le="4.0") < batches
    assert too_big.status_code == 400
    assert "batch of 65 rows exceeds the server's max batch size of 64" in too_big.text


def test_hot_reload_under_load_loses_no_request(
    model: ModelFiles, other_model: ModelFiles, frame: pd.DataFrame
) -> None:
    row = matrix_body(encode(frame.head(1), model.schema))
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(3)]
    failures: list[str] = []

    with serve(model.onnx) as running:

        def hammer(versions: list[str]) -> None:
            with httpx.Client(base_url=running.url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        response = client.post(f"/v2/models/{NAME}/infer", json=row)
                        if response.status_code != 200:
                            failures.append(response.text)
                        versions.append(response.json()["model_version"])
                    except httpx.HTTPError as error:
                        failures.append(repr(error))

        threads = [threading.Thread(target=hammer, args=(versions,)) for versions in seen]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        loaded = httpx.post(
            f"{running.url}/v2/repository/models/{NAME}/load",
            json={"parameters": {"model": str(other_model.onnx), "digest": other_model.digest}},
            timeout=30,
        )
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        with httpx.Client(base_url=running.url) as client:
            metadata = client.get(f"/v2/models/{NAME}").json()
            after = scores(infer(client, row))
            values = metrics(client)

    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {
        "name": NAME,
        "version": other_model.digest,
        "digest": other_model.digest,
    }
    assert failures == []
    for versions in seen:
        # Each client saw the old version, then only the new one: the swap is atomic.
        switch = versions.index(other_model.digest)
        assert switch > 0 and set(versions[:switch]) == {model.digest}
        assert set(versions[switch:]) == {other_model.digest}
    assert metadata["versions"] == [other_model.digest]
    rows = encode(frame.head(1), model.schema)
    assert np.max(np.abs(after - reference(other_model.onnx, rows))) <= 1e-6
    info = {labels for (name, labels) in values if name == "mlpipe_model_info"}
    assert info == {
        frozenset(
            {"model": NAME, "version": other_model.digest, "digest": other_model.digest}.items()
        )
    }


def test_in_flight_request_finishes_on_the_old_version(
    model: ModelFiles, other_model: ModelFiles, frame: pd.DataFrame
) -> None:
    """A request waiting in the old version's batch when the new version is swapped in is
    still scored by the old one; the next request by the new one. A failed load (digest
    mismatch) changes nothing."""
    rows = encode(frame.head(2), model.schema)
    with (
        serve(model.onnx, "--max-batch-wait-ms", "2000") as running,
        ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        pending = pool.submit(infer, client, matrix_body(rows))
        time.sleep(0.3)  # now waiting in the batch window
        wrong = client.post(
            f"/v2/repository/models/{NAME}/load",
            json={"parameters": {"model": str(other_model.onnx), "digest": "0" * 64}},
        )
        load = client.post(
            f"/v2/repository/models/{NAME}/load",
            json={"parameters": {"model": str(other_model.onnx), "digest": other_model.digest}},
        )
        assert not pending.done(), "the request left the batch before the swap"
        old = pending.result()
        new = infer(client, matrix_body(rows))
    assert wrong.status_code == 409
    assert f"has sha256 {other_model.digest}, expected {'0' * 64}" in wrong.json()["error"]
    assert load.status_code == 200
    assert old["model_version"] == model.digest
    assert np.max(np.abs(scores(old) - reference(model.onnx, rows))) <= 1e-6
    assert new["model_version"] == other_model.digest
    assert np.max(np.abs(scores(new) - reference(other_model.onnx, rows))) <= 1e-6


def test_graceful_shutdown_drains_an_in_flight_request(
    model: ModelFiles, frame: pd.DataFrame
) -> None:
    """SIGTERM while a request's body is still arriving: the server stops accepting new
    connections, answers that request in full, then exits."""
    body = json.dumps(matrix_body(encode(frame.head(3), model.schema))).encode()
    head = (
        f"POST /v2/models/{NAME}/infer HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with serve(model.onnx) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as connection:
            connection.sendall(head + body[:20])
            time.sleep(0.3)  # the server has the headers: the request is in flight
            running.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", running.port), timeout=2)
            assert running.process.poll() is None, "exited with a request in flight"
            connection.sendall(body[20:])
            response = b""
            while chunk := connection.recv(65536):
                response += chunk
        # uvicorn re-raises the signal once drained: the exit status says "ended by SIGTERM".
        assert running.process.wait(timeout=10) == -signal.SIGTERM
    status, _, rest = response.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    served = scores(json.loads(rest.partition(b"\r\n\r\n")[2]))
    expected = reference(model.onnx, encode(frame.head(3), model.schema))
    assert np.max(np.abs(served - expected)) <= 1e-6


def test_model_from_s3_is_verified_then_served(
    s3_server: EmbeddedS3,
    store: ArtifactStore,
    s3_env: dict[str, str],
    model: ModelFiles,
    other_model: ModelFiles,
    frame: pd.DataFrame,
) -> None:
    """From the registry layout in the bucket: the schema is found beside the model, the
    digest checked; then a new version is loaded from S3 through tritonclient's
    `load_model(config=...)`."""
    env = {**os.environ, **s3_env}
    uris = {}
    for files in (model, other_model):
        folder = f"registry/{NAME}/versions/{files.digest}"
        store.upload_file(files.onnx, f"{folder}/model.onnx")
        store.upload_file(files.onnx.with_name(SCHEMA_FILE), f"{folder}/{SCHEMA_FILE}")
        uris[files.digest] = store.uri(f"{folder}/model.onnx")
    rows = encode(frame.head(4), model.schema)
    with (
        serve(uris[model.digest], "--digest", model.digest, env=env) as running,
        httpx.Client(base_url=running.url) as client,
    ):
        first = infer(client, matrix_body(rows))
        triton_client = triton.InferenceServerClient(running.url.removeprefix("http://"))
        config = {"model": uris[other_model.digest], "digest": other_model.digest}
        triton_client.load_model(NAME, config=json.dumps(config))
        with pytest.raises(InferenceServerException, match="no such object"):
            missing = {"model": uris[model.digest] + "x", "digest": model.digest}
            triton_client.load_model(NAME, config=json.dumps(missing))
        triton_client.close()
        second = infer(client, matrix_body(rows))
    assert first["model_version"] == model.digest
    assert np.max(np.abs(scores(first) - reference(model.onnx, rows))) <= 1e-6
    assert second["model_version"] == other_model.digest
    assert np.max(np.abs(scores(second) - reference(other_model.onnx, rows))) <= 1e-6

    # An object whose bytes do not match the sha256 recorded at upload is refused.
    raw = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name="us-east-1",
    )
    corrupt = f"registry/{NAME}/versions/corrupt/model.onnx"
    raw.put_object(
        Bucket=store.bucket,
        Key=corrupt,
        Body=model.onnx.read_bytes(),
        Metadata={"sha256": "f" * 64},
    )
    stderr = refused(store.uri(corrupt), env=env)
    assert f"is corrupted: sha256 recorded {'f' * 64}, fetched {model.digest}" in stderr
    missing = refused(store.uri("registry/none/model.onnx"), env=env)
    assert "registry/none/model.onnx: no such object" in missing


def test_digest_mismatch_refuses_to_start(model: ModelFiles) -> None:
    wrong = "0" * 64
    stderr = refused(model.onnx, "--digest", wrong)
    assert f"has sha256 {model.digest}, expected {wrong}: refusing to serve it" in stderr


def test_schema_that_does_not_fit_the_model_refuses_to_start(
    model: ModelFiles, tmp_path: Path
) -> None:
    narrower = FeatureSchema(features=model.schema.features[:-1])
    schema = tmp_path / SCHEMA_FILE
    save_schema(narrower, schema)
    stderr = refused(model.onnx, "--schema", str(schema))
    width = len(model.schema.features)
    assert f"takes {width} features, the feature schema lists {width - 1}" in stderr


def test_missing_or_invalid_schema_refuses_to_start(model: ModelFiles, tmp_path: Path) -> None:
    missing = refused(model.onnx, "--schema", str(tmp_path / "absent.json"))
    assert f"cannot read {tmp_path / 'absent.json'}" in missing
    broken = tmp_path / "broken.json"
    broken.write_text('{"features": "none"}')
    assert "broken.json is not a feature schema" in refused(model.onnx, "--schema", str(broken))
    alone = tmp_path / "model.onnx"  # no feature-schema.json beside it
    alone.write_bytes(model.onnx.read_bytes())
    assert f"cannot read {tmp_path / SCHEMA_FILE}" in refused(alone)


def test_bad_options_refuse_to_start(model: ModelFiles) -> None:
    assert "model name 'a b'" in refused(model.onnx, "--name", "a b")
    assert refused(model.onnx, "--max-batch-size", "0") == (
        "error: argument --max-batch-size: 0 is not a positive integer (--help lists the options)\n"
    )
    # uvicorn took 99999 and listened on another port (99999 - 65536) after announcing :99999.
    assert refused(model.onnx, "--port", "99999") == (
        "error: argument --port: 99999 is not a TCP port (0-65535) (--help lists the options)\n"
    )
    assert refused(model.onnx, "--drain-timeout", "soon") == (
        "error: argument --drain-timeout: 'soon' is not a number (--help lists the options)\n"
    )
    unresolvable = refused(model.onnx, "--host", "no-such-host.invalid")
    assert unresolvable.splitlines()[-1].startswith("error: --host no-such-host.invalid: ")


def test_port_in_use_is_an_infrastructure_failure(model: ModelFiles) -> None:
    # refused() holds the port it gives the server, so the bind is what fails: after the
    # model checked out, before anything answers.
    stderr = refused(model.onnx, code=3)
    *loaded, error = stderr.splitlines()
    assert loaded == [f"serving model {NAME!r} version {model.digest} (sha256 {model.digest})"]
    assert error.startswith("error: cannot listen on 127.0.0.1:") and error.endswith(
        ": Address already in use"
    )


def test_model_without_probabilities_refuses_to_start(model: ModelFiles, tmp_path: Path) -> None:
    width = len(model.schema.features)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["scores"])],
        "not_a_classifier",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, width])],
        [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [None, width])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 15)]), path)
    save_schema(model.schema, tmp_path / SCHEMA_FILE)
    stderr = refused(path)
    assert "identity.onnx cannot score a probe row into output 'probabilities'" in stderr
