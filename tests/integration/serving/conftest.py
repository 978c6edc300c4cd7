"""The model and servers the serving tests share (each module gets its own)."""

from collections.abc import Iterator

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from tests.support.datasets import churn_frame
from tests.support.serving import ModelFiles, Server, build_model, frame_schema, serve


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    # Through Arrow, as load_split reads it: categorical columns come back as strings.
    return pa.Table.from_pandas(churn_frame(600, seed=3)).to_pandas()


@pytest.fixture(scope="module")
def model(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    return build_model(frame, frame_schema(frame), tmp_path_factory.mktemp("serving") / "a")


@pytest.fixture(scope="module")
def other_model(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelFiles:
    folder = tmp_path_factory.mktemp("serving") / "b"
    return build_model(frame, frame_schema(frame), folder, rounds=30)


@pytest.fixture(scope="module")
def server(model: ModelFiles) -> Iterator[Server]:
    with serve(model.onnx, "--digest", model.digest) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http
