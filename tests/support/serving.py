"""The model server as tests run it: a tiny model and its ONNX export, `python -m serving`
on a free port (or refusing to start), and what requests and answers look like."""

import hashlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import xgboost
from prometheus_client.parser import text_string_to_metric_families

from steps.core.names import ModelFile
from steps.core.specs import QuantizeSpec
from steps.data.features import Feature, FeatureSchema, encode, save_schema
from steps.quantize.step import ONNX_INPUT, to_onnx
from tests.support.datasets import LABEL, ROW_KEY

NAME = "churn"
SCHEMA_FILE = "feature-schema.json"
SERVE = [sys.executable, "-m", "serving", "--model"]


@dataclass(frozen=True)
class ModelFiles:
    onnx: Path
    """model.onnx, with feature-schema.json beside it (the registry layout)."""
    bundle: Path
    """The model bundle (booster and feature schema), as the train step leaves it."""
    digest: str
    schema: FeatureSchema


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


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


def build_model(
    frame: pd.DataFrame, schema: FeatureSchema, folder: Path, rounds: int = 12
) -> ModelFiles:
    """A tiny XGBoost model on `frame`: the bundle in `folder/model`, and beside it the
    ONNX export the quantize step makes, with its feature schema
    (tests/integration/deploy/test_deploy.py builds its models with this too)."""
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0},
        xgboost.DMatrix(encode(frame, schema), label=frame[LABEL]),
        num_boost_round=rounds,
    )
    bundle = folder / "model"
    bundle.mkdir(parents=True)
    booster.save_model(bundle / ModelFile.BOOSTER)
    save_schema(schema, bundle / ModelFile.FEATURE_SCHEMA)
    exported = to_onnx(booster, QuantizeSpec().target_opset)
    (folder / "model.onnx").write_bytes(exported)
    save_schema(schema, folder / SCHEMA_FILE)
    digest = hashlib.sha256(exported).hexdigest()
    return ModelFiles(folder / "model.onnx", bundle, digest, schema)


def reference(path: Path, rows: np.ndarray) -> np.ndarray:
    """onnxruntime on the file itself: column 1 of the [N, 2] probabilities."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {ONNX_INPUT: rows})
    return probabilities[:, 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(
    model: str | Path | None,
    *flags: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    name: str = NAME,
) -> Iterator[Server]:
    """`python -m serving` on a free port until the block ends (SIGTERM, then wait).
    `model` None: the flags say what to serve (e.g. --registry). `log`: keep the server's
    stderr there, for tests that read it."""
    port = free_port()
    command = [*SERVE, str(model), "--name", name] if model is not None else SERVE[:-1]
    with tempfile.TemporaryFile() if log is None else log.open("w+b") as stderr:
        process = subprocess.Popen(
            [*command, "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    stderr.seek(0)
                    pytest.fail(f"server exited {process.returncode}: {stderr.read().decode()}")
                try:
                    if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server not ready after 30 s"
                time.sleep(0.05)
            yield Server(url, process)
        finally:
            process.terminate()
            process.wait(timeout=15)


def refused(
    model: str | Path | None,
    *flags: str,
    env: dict[str, str] | None = None,
    code: int = 2,
) -> str:
    """Run a server that must refuse to start (exit `code`); returns its stderr. The port
    is held here, so a server that wrongly went on fails to bind rather than run until the
    timeout."""
    command = [*SERVE, str(model), "--name", NAME] if model is not None else SERVE[:-1]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        result = subprocess.run(
            [*command, "--port", str(held.getsockname()[1]), *flags],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def matrix_body(rows: np.ndarray, *, nested: bool = False, datatype: str = "FP32") -> dict:
    # JSON has no NaN: a missing value travels as null.
    values = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    data = values if nested else [v for row in values for v in row]
    return {
        "id": "req-1",
        "inputs": [
            {"name": ONNX_INPUT, "shape": list(rows.shape), "datatype": datatype, "data": data}
        ],
    }


def infer(client: httpx.Client, body: dict, path: str = f"/v2/models/{NAME}/infer") -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def scores(body: dict) -> np.ndarray:
    (output,) = body["outputs"]
    assert output["name"] == "probability" and output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float64)


def metrics(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, keyed by (sample name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(values: dict, name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)
