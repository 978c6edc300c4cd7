"""The serving control plane: who may change what is served, what a load must prove, what a
restart brings back, and what hostile bodies get. Real `python -m serving` processes and
real clients (httpx, tritonclient); the registry is the one deploy writes, in a real
SeaweedFS bucket."""

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from steps.core.model_registry import stable_key, version_key
from steps.core.store import DEFAULT_REGION, ArtifactStore
from steps.data import synth
from steps.data.features import encode, load_schema
from tests.support.serving import (
    NAME,
    ModelFiles,
    free_port,
    matrix_body,
    reference,
    refused,
    scores,
    serve,
)
from tests.support.stable_model import register_stable_model
from workflows.s3server import EmbeddedS3

TOKEN = "s3cr3t-control-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
LOAD = f"/v2/repository/models/{NAME}/load"
UNLOAD = f"/v2/repository/models/{NAME}/unload"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # as a Secret mounted from a file may end
    return path


def one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "\n" not in response.text
    (message,) = response.json().values()
    assert list(response.json()) == ["error"]
    return str(message)


def test_load_and_unload_require_the_token_and_the_digest(
    model: ModelFiles, other_model: ModelFiles, frame: pd.DataFrame, token_file: Path
) -> None:
    rows = encode(frame.head(3), model.schema)
    new = {"parameters": {"model": str(other_model.onnx), "digest": other_model.digest}}
    with (
        serve(model.onnx, "--digest", model.digest, "--token-file", str(token_file)) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        missing = client.post(LOAD, json=new)
        assert "repository load needs the control token" in one_line_error(missing, 401)
        assert missing.headers["www-authenticate"] == 'Bearer realm="mlpipe-serving"'
        wrong = client.post(LOAD, json=new, headers={"Authorization": "Bearer guess"})
        assert "not this server's control token" in one_line_error(wrong, 403)
        basic = client.post(LOAD, json=new, headers={"Authorization": f"Basic {TOKEN}"})
        one_line_error(basic, 401)

        undigested = {"parameters": {"model": str(other_model.onnx)}}
        response = client.post(LOAD, json=undigested, headers=BEARER)
        assert "digest: required" in one_line_error(response, 400)
        mismatched = {"parameters": {"model": str(other_model.onnx), "digest": model.digest}}
        response = client.post(LOAD, json=mismatched, headers=BEARER)
        message = one_line_error(response, 409)
        assert f"has sha256 {other_model.digest}, expected {model.digest}" in message
        # Nothing refused changed what is served.
        assert client.get(f"/v2/models/{NAME}").json()["versions"] == [model.digest]
        assert np.allclose(
            scores(client.post(f"/v2/models/{NAME}/infer", json=matrix_body(rows)).json()),
            reference(model.onnx, rows),
            atol=1e-6,
        )

        loaded = client.post(LOAD, json=new, headers=BEARER)
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["digest"] == other_model.digest
        served = client.post(f"/v2/models/{NAME}/infer", json=matrix_body(rows)).json()
        assert np.max(np.abs(scores(served) - reference(other_model.onnx, rows))) <= 1e-6

        # A stock client carries the token as a header.
        triton_client = triton.InferenceServerClient(running.url.removeprefix("http://"))
        with pytest.raises(InferenceServerException, match="401"):
            triton_client.unload_model(NAME)
        config = json.dumps(new["parameters"])
        with pytest.raises(InferenceServerException, match="403"):
            triton_client.load_model(NAME, headers={"Authorization": "Bearer x"}, config=config)
        triton_client.load_model(NAME, headers=BEARER, config=config)
        triton_client.close()

        stale = client.post(UNLOAD, json={"parameters": {"digest": model.digest}}, headers=BEARER)
        assert f"serves sha256 {other_model.digest}, not {model.digest}" in one_line_error(
            stale, 409
        )
        unloaded = client.post(
            UNLOAD, json={"parameters": {"digest": other_model.digest}}, headers=BEARER
        )
        assert unloaded.status_code == 200 and unloaded.json()["digest"] == other_model.digest
        gone = client.post(f"/v2/models/{NAME}/infer", json=matrix_body(rows))
        assert "unknown model 'churn'; this server serves []" in one_line_error(gone, 404)
        assert client.get("/v2/health/ready").status_code == 503
        info = client.get("/metrics").text
        assert "mlpipe_model_info{" not in info  # the unloaded version's series is gone
        assert f'mlpipe_inference_requests_total{{model="{NAME}"' in info  # counts stay


def test_token_from_the_environment(model: ModelFiles, other_model: ModelFiles) -> None:
    env = {**os.environ, "MLPIPE_SERVING_TOKEN": TOKEN}
    reload = {"parameters": {"model": str(other_model.onnx), "digest": other_model.digest}}
    with serve(model.onnx, env=env) as running:
        assert httpx.post(running.url + LOAD, json=reload, timeout=30).status_code == 401
        ok = httpx.post(running.url + LOAD, json=reload, headers=BEARER, timeout=30)
        assert ok.status_code == 200, ok.text


def test_without_a_token_the_open_control_plane_is_logged(
    model: ModelFiles, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    reload = {"parameters": {"digest": model.digest}}
    with serve(model.onnx, log=log) as running:
        assert httpx.post(running.url + LOAD, json=reload, timeout=30).status_code == 200
    assert "warning: no control token" in log.read_text()


def test_a_bad_token_setting_refuses_to_start(model: ModelFiles, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert f"the control token in {empty} is empty" in refused(
        model.onnx, "--token-file", str(empty)
    )
    absent = tmp_path / "absent"
    assert f"cannot read the control token file {absent}" in refused(
        model.onnx, "--token-file", str(absent)
    )
    env = {**os.environ, "MLPIPE_SERVING_TOKEN": TOKEN}
    assert "not both" in refused(model.onnx, "--token-file", str(empty), env=env)


# --- the registry ------------------------------------------------------------------------


@pytest.fixture
def registry(store: ArtifactStore) -> dict[str, str]:
    """Two models deployed to the registry by the deploy step's own `register`, and a
    folder holding a version but no stable.json (never promoted): name -> stable digest."""
    digests = {
        name: register_stable_model(store, synth.generate(800, seed=seed), name, with_profile=False)
        for seed, name in ((1, "churn"), (2, "fraud"))
    }
    store.put_bytes(f"{version_key('draft', '0' * 64)}/model.onnx", b"not promoted")
    return digests


def _registry_env(s3_env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **s3_env}


def _download(store: ArtifactStore, name: str, digest: str, folder: Path) -> Path:
    for file in ("model.onnx", "feature-schema.json"):
        store.download_file(f"{version_key(name, digest)}/{file}", folder / file)
    return folder / "model.onnx"


def test_a_restart_serves_every_registered_stable_model(
    store: ArtifactStore,
    s3_env: dict[str, str],
    registry: dict[str, str],
    model: ModelFiles,
    token_file: Path,
    tmp_path: Path,
) -> None:
    env = _registry_env(s3_env)
    location = store.uri("registry")
    flags = ("--registry", location, "--token-file", str(token_file))
    onnx = {name: _download(store, name, d, tmp_path / name) for name, d in registry.items()}
    # Deploy's stable server gains a third, unregistered model by a load...
    with serve(None, *flags, env=env) as running:
        extra = {"parameters": {"model": str(model.onnx), "digest": model.digest}}
        loaded = httpx.post(
            f"{running.url}/v2/repository/models/scratch/load", json=extra, headers=BEARER
        )
        assert loaded.status_code == 200, loaded.text
    # ...and after a restart serves exactly what the registry says.
    for _ in range(2):
        with serve(None, *flags, env=env) as running, httpx.Client(base_url=running.url) as client:
            index = client.post("/v2/repository/index").json()
            assert [(m["name"], m["version"]) for m in index] == sorted(registry.items())
            for name, digest in registry.items():
                schema = load_schema(onnx[name].with_name("feature-schema.json"))
                rows = encode(synth.generate(20, seed=9), schema)
                body = matrix_body(rows)
                answer = client.post(f"/v2/models/{name}/infer", json=body).json()
                assert answer["model_version"] == digest
                assert np.max(np.abs(scores(answer) - reference(onnx[name], rows))) <= 1e-6
            assert client.get("/v2/models/scratch").status_code == 404


def test_a_registered_version_loads_by_digest_alone(
    store: ArtifactStore, s3_env: dict[str, str], registry: dict[str, str], tmp_path: Path
) -> None:
    """Deploy can switch a model to any registered version by its digest: the server finds
    the file in the registry and verifies it; a digest not registered is no file at all."""
    second = register_stable_model(store, synth.generate(900, seed=5), "churn", with_profile=False)
    store.put_json(stable_key("churn"), {"digest": registry["churn"]})  # back to the first
    with serve(None, "--registry", store.uri("registry"), env=_registry_env(s3_env)) as running:
        assert httpx.get(f"{running.url}/v2/models/churn").json()["versions"] == [registry["churn"]]
        load = httpx.post(
            f"{running.url}/v2/repository/models/churn/load",
            json={"parameters": {"digest": second}},
            timeout=30,
        )
        assert load.status_code == 200 and load.json()["digest"] == second
        unknown = httpx.post(
            f"{running.url}/v2/repository/models/churn/load",
            json={"parameters": {"digest": "e" * 64}},
            timeout=30,
        )
        assert f"versions/{'e' * 64}/model.onnx: no such object" in one_line_error(unknown, 400)


def test_a_tampered_registry_refuses_to_start(
    s3_server: EmbeddedS3,
    store: ArtifactStore,
    s3_env: dict[str, str],
    registry: dict[str, str],
    other_model: ModelFiles,
) -> None:
    env = _registry_env(s3_env)
    location = store.uri("registry")
    # Another valid model under the stable version's key, with a matching sha256 in its
    # metadata: the bytes fit their object, not the digest stable.json records.
    key = f"{version_key('fraud', registry['fraud'])}/model.onnx"
    store.upload_file(other_model.onnx, key)
    stderr = refused(None, "--registry", location, env=env)
    assert (
        f"{store.uri(key)} has sha256 {other_model.digest}, expected {registry['fraud']}: "
        "refusing to serve it"
    ) in stderr

    # A pointer to a folder of another digest.
    elsewhere = version_key("fraud", "1" * 64)
    store.put_json(
        stable_key("fraud"),
        {"model_name": "fraud", "digest": registry["fraud"], "version_key": elsewhere},
    )
    stderr = refused(None, "--registry", location, env=env)
    assert f"{store.uri(stable_key('fraud'))}: 'version_key'" in stderr
    assert f"is not the folder of digest {registry['fraud']}" in stderr

    # A pointer that is not JSON.
    store.put_bytes(stable_key("fraud"), b"{")
    assert f"{store.uri(stable_key('fraud'))} is not JSON" in refused(
        None, "--registry", location, env=env
    )


def test_a_registry_with_nothing_or_out_of_reach(
    s3_server: EmbeddedS3, store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = _registry_env(s3_env)
    nothing = refused(None, "--registry", store.uri("registry"), env=env)
    assert "holds no stable model" in nothing
    dead = {**env, "MLPIPE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    unreachable = refused(None, "--registry", store.uri("registry"), env=dead, code=3)
    assert "cannot reach the S3 endpoint" in unreachable
    assert "give --registry, --model" in refused(None)


# --- hostile bodies ------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nested_and_oversized_bodies_get_400_and_413_without_a_traceback(
    model: ModelFiles, frame: pd.DataFrame, tmp_path: Path, token_file: Path
) -> None:
    log = tmp_path / "server.log"
    flags = ("--max-body-bytes", "100000", "--token-file", str(token_file))
    infer = f"/v2/models/{NAME}/infer"
    deep_bytes = {
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 5], "data": "SLOT"}]
    }
    deep_inside = json.dumps(deep_bytes).replace('"SLOT"', _nested(900).decode()).encode()
    huge = json.dumps(matrix_body(np.zeros((4000, 5), np.float32))).encode()
    assert len(huge) > 100_000

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 8192):
            yield huge[start : start + 8192]

    with (
        serve(model.onnx, *flags, log=log) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        for body in (_nested(3000), b'{"inputs": ' + _nested(1100) + b"}", deep_inside):
            response = client.post(infer, content=body)
            assert one_line_error(response, 400)
        deep = client.post(LOAD, content=b'{"parameters": ' + _nested(3000) + b"}", headers=BEARER)
        assert "malformed JSON" in one_line_error(deep, 400)
        declared = client.post(infer, content=huge)
        assert f"body of {len(huge)} bytes exceeds 100000" in one_line_error(declared, 413)
        streamed = client.post(infer, content=chunks())  # chunked: no length declared
        assert "body exceeds 100000 bytes" in one_line_error(streamed, 413)
        control = client.post(LOAD, content=b" " * 70_000, headers=BEARER)
        assert "exceeds 65536" in one_line_error(control, 413)
        rows = encode(frame.head(2), model.schema)
        assert client.post(infer, json=matrix_body(rows)).status_code == 200
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI" not in text, text


def test_load_needs_a_digest_even_on_an_open_server(model: ModelFiles) -> None:
    """Without a token anyone on the network may load, but only a file they can name the
    sha256 of; a reload of the current file needs it too when it was started without."""
    with serve(model.onnx) as running:
        response = httpx.post(running.url + LOAD, json={}, timeout=30)
        assert "digest: required" in one_line_error(response, 400)
        digest = hashlib.sha256(model.onnx.read_bytes()).hexdigest()
        reload = {"parameters": {"digest": digest}}
        assert httpx.post(running.url + LOAD, json=reload, timeout=30).status_code == 200


def test_an_s3_object_corrupted_after_upload_is_a_conflict_on_load(
    s3_server: EmbeddedS3, store: ArtifactStore, s3_env: dict[str, str], model: ModelFiles
) -> None:
    raw = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key=s3_server.secret_key,
        region_name=DEFAULT_REGION,
    )
    key = "elsewhere/model.onnx"
    raw.put_object(
        Bucket=store.bucket, Key=key, Body=model.onnx.read_bytes(), Metadata={"sha256": "f" * 64}
    )
    store.upload_file(model.onnx.with_name("feature-schema.json"), "elsewhere/feature-schema.json")
    with serve(model.onnx, env=_registry_env(s3_env)) as running:
        load = {"parameters": {"model": store.uri(key), "digest": model.digest}}
        response = httpx.post(running.url + LOAD, json=load, timeout=30)
        assert "is corrupted: sha256 recorded" in one_line_error(response, 409)
