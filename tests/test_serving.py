"""The model server as a client sees it: a real `python -m serving` process on a free port,
spoken to over real HTTP, checked against onnxruntime run directly on the same file."""

import hashlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pytest
import xgboost

from steps.deploy import local_server
from steps.features import Feature, FeatureSchema, encode, save_schema
from steps.names import ModelFile
from steps.quantize import ONNX_INPUT, to_onnx
from steps.specs import DeploySpec, QuantizeSpec
from tests.datasets import LABEL, ROW_KEY, churn_frame

NAME = "churn"


@dataclass(frozen=True)
class ModelFiles:
    onnx: Path
    bundle: Path
    digest: str
    schema: FeatureSchema


def frame_schema(frame: pd.DataFrame) -> FeatureSchema:
    """Features as the dataset manifest would list them: numeric, or sorted categories."""
    features = []
    for name in frame.columns.drop([LABEL, ROW_KEY]):
        if pd.api.types.is_numeric_dtype(frame[name]):
            features.append(Feature(name=name, kind="numeric"))
        else:
            categories = sorted(frame[name].dropna().unique())
            features.append(Feature(name=name, kind="categorical", categories=categories))
    return FeatureSchema(features=features)


def build_model(frame: pd.DataFrame, schema: FeatureSchema, folder: Path) -> ModelFiles:
    """A tiny XGBoost model on `frame`: the bundle in `folder/model`, and beside it the
    ONNX export the quantize step makes."""
    rows = encode(frame, schema)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0},
        xgboost.DMatrix(rows, label=frame[LABEL]),
        num_boost_round=12,
    )
    bundle = folder / "model"
    bundle.mkdir(parents=True)
    booster.save_model(bundle / ModelFile.BOOSTER)
    save_schema(schema, bundle / ModelFile.FEATURE_SCHEMA)
    exported = to_onnx(booster, QuantizeSpec().target_opset)
    (folder / "model.onnx").write_bytes(exported)
    digest = hashlib.sha256(exported).hexdigest()
    return ModelFiles(onnx=folder / "model.onnx", bundle=bundle, digest=digest, schema=schema)


def reference(path: Path, rows: np.ndarray) -> np.ndarray:
    """onnxruntime on the file itself: column 1 of the [N, 2] probabilities."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {ONNX_INPUT: rows})
    return probabilities[:, 1]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    # Through Arrow, as load_split reads it: categorical columns come back as strings.
    return pa.Table.from_pandas(churn_frame(600, seed=3)).to_pandas()


@pytest.fixture(scope="module")
def model(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return build_model(frame, frame_schema(frame), tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def url(model: ModelFiles) -> Iterator[str]:
    spec = DeploySpec(startup_timeout_seconds=30)
    with local_server(
        model.onnx, model.bundle / ModelFile.FEATURE_SCHEMA, NAME, model.digest, spec
    ) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10) as http:
        yield http


def infer_body(rows: np.ndarray, *, nested: bool = False, datatype: str = "FP32") -> dict:
    data = rows.tolist() if nested else rows.reshape(-1).tolist()
    # JSON has no NaN: a missing value travels as null.
    if nested:
        data = [[None if np.isnan(v) else v for v in row] for row in data]
    else:
        data = [None if np.isnan(v) else v for v in data]
    return {
        "id": "req-1",
        "inputs": [
            {"name": ONNX_INPUT, "shape": list(rows.shape), "datatype": datatype, "data": data}
        ],
    }


def test_health_and_server_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "mlpipe-serving"
    assert server["version"] and server["extensions"] == []


@pytest.mark.parametrize("versioned", [False, True])
def test_model_metadata_and_readiness(
    client: httpx.Client, model: ModelFiles, versioned: bool
) -> None:
    path = f"/v2/models/{NAME}" + (f"/versions/{model.digest}" if versioned else "")
    metadata = client.get(path).json()
    assert metadata["name"] == NAME
    assert metadata["versions"] == [model.digest]  # the version defaults to the sha256
    assert metadata["platform"] == "onnxruntime_onnx"
    (tensor,) = metadata["inputs"]
    assert tensor["name"] == ONNX_INPUT and tensor["datatype"] == "FP32"
    assert tensor["shape"] == [-1, len(model.schema.features)]
    assert tensor["parameters"]["features"] == model.schema.names
    assert metadata["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
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
def test_infer_matches_onnxruntime(
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
    response = client.post(path, json=infer_body(matrix, nested=nested, datatype=datatype))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == NAME and body["model_version"] == model.digest
    assert body["id"] == "req-1"
    (output,) = body["outputs"]
    assert output["name"] == "probability" and output["datatype"] == "FP32"
    assert output["shape"] == [rows]
    served = np.asarray(output["data"], dtype=np.float64)
    assert np.max(np.abs(served - reference(model.onnx, matrix))) <= 1e-6
    assert served.min() >= 0 and served.max() <= 1


def test_requested_output_is_honoured(
    client: httpx.Client, model: ModelFiles, frame: pd.DataFrame
) -> None:
    body = infer_body(encode(frame.head(2), model.schema))
    body["outputs"] = [{"name": "probability"}]
    assert client.post(f"/v2/models/{NAME}/infer", json=body).status_code == 200
    body["outputs"] = [{"name": "label"}]
    response = client.post(f"/v2/models/{NAME}/infer", json=body)
    assert response.status_code == 400 and "label" in response.json()["error"]


def _valid(frame: pd.DataFrame, model: ModelFiles) -> dict:
    return infer_body(encode(frame.head(2), model.schema))


def _with_input(body: dict, **changes: object) -> dict:
    return {**body, "inputs": [{**body["inputs"][0], **changes}]}


@pytest.mark.parametrize(
    ("case", "status", "fragment"),
    [
        ("unknown model", 404, "unknown model 'nope'"),
        ("unknown version", 404, "no version 'v9'"),
        ("unknown route", 404, "Not Found"),
        ("wrong method", 405, "Method Not Allowed"),
        ("wrong shape", 400, "expected [N, {width}]"),
        ("too few values", 400, "needs {values} values"),
        ("ragged rows", 400, "must be numbers"),
        ("wrong datatype", 400, "datatype 'INT64'"),
        ("text values", 400, "must be numbers"),
        ("unknown input", 400, "unknown input 'x'"),
        ("no inputs", 400, "'inputs' must be a list of one tensor"),
        ("malformed JSON", 400, "malformed JSON"),
        ("not an object", 400, "must be a JSON object"),
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
    infer = f"/v2/models/{NAME}/infer"
    requests = {
        "unknown model": ("POST", "/v2/models/nope/infer", body),
        "unknown version": ("GET", f"/v2/models/{NAME}/versions/v9/ready", None),
        "unknown route": ("GET", "/v2/nothing/here", None),
        "wrong method": ("GET", infer, None),
        "wrong shape": ("POST", infer, _with_input(body, shape=[2, width + 1])),
        "too few values": ("POST", infer, _with_input(body, data=[0.5] * (2 * width - 1))),
        "ragged rows": ("POST", infer, _with_input(body, data=[[0.5] * width, [0.5]])),
        "wrong datatype": ("POST", infer, _with_input(body, datatype="INT64")),
        "text values": ("POST", infer, _with_input(body, data=["a"] * (2 * width))),
        "unknown input": ("POST", infer, _with_input(body, name="x")),
        "no inputs": ("POST", infer, {"inputs": []}),
        "malformed JSON": ("POST", infer, b'{"inputs": [{"name": '),
        "not an object": ("POST", infer, b"[1, 2]"),
    }
    method, path, payload = requests[case]
    if isinstance(payload, bytes):
        response = client.request(method, path, content=payload)
    else:
        response = client.request(method, path, json=payload)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert list(error) == ["error"] and fragment in error["error"]
    assert "Traceback" not in response.text
    # The server is still healthy after a bad request.
    assert client.get("/v2/health/ready").status_code == 200


def _serve(
    model: ModelFiles, *extra: str, schema: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a server that must refuse to start. Its port is held by this test, so a server
    that wrongly went on would fail to bind rather than run until the timeout."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        return subprocess.run(
            [*_command(model, schema), "--port", str(held.getsockname()[1]), *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )


def _command(model: ModelFiles, schema: Path | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "serving",
        "--model",
        str(model.onnx),
        "--schema",
        str(schema or model.bundle / ModelFile.FEATURE_SCHEMA),
        "--name",
        NAME,
    ]


def test_digest_mismatch_refuses_to_start(model: ModelFiles) -> None:
    wrong = "0" * 64
    result = _serve(model, "--digest", wrong)
    assert result.returncode == 2
    assert model.digest in result.stderr and wrong in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_that_does_not_fit_the_model_refuses_to_start(
    model: ModelFiles, tmp_path: Path
) -> None:
    narrower = FeatureSchema(features=model.schema.features[:-1])
    schema = tmp_path / "feature-schema.json"
    save_schema(narrower, schema)
    result = _serve(model, schema=schema)
    assert result.returncode == 2
    width = len(model.schema.features)
    assert f"takes {width} features, the feature schema lists {width - 1}" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_or_invalid_schema_refuses_to_start(model: ModelFiles, tmp_path: Path) -> None:
    missing = _serve(model, schema=tmp_path / "absent.json")
    assert missing.returncode == 2 and "absent.json" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"features": "none"}')
    invalid = _serve(model, schema=broken)
    assert invalid.returncode == 2 and "broken.json is not a feature schema" in invalid.stderr
    assert "Traceback" not in missing.stderr + invalid.stderr


def test_model_without_probabilities_refuses_to_start(model: ModelFiles, tmp_path: Path) -> None:
    width = len(model.schema.features)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["scores"])],
        "not_a_classifier",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, width])],
        [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [None, width])],
    )
    other = ModelFiles(
        onnx=tmp_path / "identity.onnx", bundle=model.bundle, digest="", schema=model.schema
    )
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 15)]), other.onnx
    )
    result = _serve(other)
    assert result.returncode == 2
    assert "identity.onnx cannot score a probe row into output 'probabilities'" in result.stderr
    assert "Traceback" not in result.stderr
