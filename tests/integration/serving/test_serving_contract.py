"""The serving contract as a client meets it: a stock `tritonclient.http` that builds its
request from nothing but the model metadata gets the scores onnxruntime computes on the
same rows, and a value the model cannot take is refused with the column named, never
scored. Real `python -m serving` processes, real HTTP."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from steps.data.features import encode
from steps.quantize.step import ONNX_INPUT
from tests.support.serving import (
    NAME,
    SCHEMA_FILE,
    ModelFiles,
    Server,
    matrix_body,
    reference,
    serve,
)


@pytest.fixture(scope="module")
def strict_server(model: ModelFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same model under a schema whose data contract forbids missing values in
    `tenure_months` and `plan`."""
    schema = json.loads(model.onnx.with_name(SCHEMA_FILE).read_text())
    for feature in schema["features"]:
        feature["nullable"] = feature["name"] not in ("tenure_months", "plan")
    path = tmp_path_factory.mktemp("strict") / SCHEMA_FILE
    path.write_text(json.dumps(schema))
    with serve(model.onnx, "--schema", str(path)) as running:
        yield running


def metadata_inputs(client: triton.InferenceServerClient, form: str) -> list[dict]:
    return [
        tensor
        for tensor in client.get_model_metadata(NAME)["inputs"]
        if tensor["parameters"]["form"] == form
    ]


def column_as(values: pd.Series, datatype: str) -> np.ndarray:
    """A data column as the metadata's datatype asks: text for BYTES (an empty string for a
    missing value, which the server treats like a category it never saw), else numbers."""
    if datatype == "BYTES":
        return np.array([b"" if pd.isna(v) else str(v).encode() for v in values], dtype=object)
    return values.to_numpy(dtype=np.float32, na_value=np.nan)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_builds_requests_from_the_metadata_alone(
    server: Server, model: ModelFiles, frame: pd.DataFrame, binary: bool
) -> None:
    rows = frame.head(12)
    assert rows.isna().any().any()  # missing values travel too
    expected = reference(model.onnx, encode(rows, model.schema))
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        # One tensor per feature: the data file's columns, as the client holds them.
        inputs = []
        for tensor in metadata_inputs(client, "per_feature"):
            shape = [len(rows) if dim == -1 else dim for dim in tensor["shape"]]
            column = triton.InferInput(tensor["name"], shape, tensor["datatype"])
            column.set_data_from_numpy(
                column_as(rows[tensor["name"]], tensor["datatype"]), binary_data=binary
            )
            inputs.append(column)
        result = client.infer(NAME, inputs)
        assert np.max(np.abs(result.as_numpy("probability") - expected)) <= 1e-6

        # The [N, F] matrix: the features in the order the metadata lists, categories as
        # their index in the schema's categories (served under parameters too).
        (tensor,) = metadata_inputs(client, "matrix")
        schema = client.get_model_metadata(NAME)["parameters"]["feature_schema"]
        order = tensor["parameters"]["features"]
        assert order == [feature["name"] for feature in schema["features"]]
        matrix = np.empty((len(rows), len(order)), dtype=np.float32)
        for index, feature in enumerate(schema["features"]):
            values = rows[feature["name"]]
            if feature["kind"] == "categorical":
                codes = {category: code for code, category in enumerate(feature["categories"])}
                values = values.map(codes)
            matrix[:, index] = values.to_numpy(dtype=np.float32, na_value=np.nan)
        whole = triton.InferInput(tensor["name"], list(matrix.shape), tensor["datatype"])
        whole.set_data_from_numpy(matrix, binary_data=binary)
        result = client.infer(NAME, [whole])
        assert np.max(np.abs(result.as_numpy("probability") - expected)) <= 1e-6
    finally:
        client.close()


def _matrix(model: ModelFiles, frame: pd.DataFrame, rows: int = 3) -> np.ndarray:
    return encode(frame.head(rows), model.schema).astype(np.float64)


@pytest.mark.parametrize(
    ("case", "column", "value", "fragment"),
    [
        ("code above the range", "region", 4.0, "is 4: not a category code of 'region'"),
        ("negative code", "plan", -1.0, "is -1: not a category code of 'plan', which takes 0 to 2"),
        ("fractional code", "region", 1.5, "is 1.5: not a category code of 'region'"),
        ("infinity", "monthly_charges", np.inf, "is inf: not a finite number that fits FP32"),
        ("-infinity", "tenure_months", -np.inf, "is -inf: not a finite number"),
        ("beyond FP32", "monthly_charges", 1e39, "is 1e+39: not a finite number that fits FP32"),
    ],
)
def test_values_the_model_cannot_take_are_refused_naming_the_column(
    server: Server,
    model: ModelFiles,
    frame: pd.DataFrame,
    case: str,
    column: str,
    value: float,
    fragment: str,
) -> None:
    """In the [N, F] tensor, as JSON (where a finite number too large for FP32 can travel)
    and as binary FP64 data through tritonclient (where infinity can)."""
    matrix = _matrix(model, frame)
    index = model.schema.names.index(column)
    matrix[1, index] = value
    where = f"feature {column!r} (column {index}), row 1 {fragment}"
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        tensor = triton.InferInput(ONNX_INPUT, list(matrix.shape), "FP64")
        tensor.set_data_from_numpy(matrix, binary_data=True)
        with pytest.raises(InferenceServerException, match="400") as refused:
            client.infer(NAME, [tensor])
        assert where in str(refused.value)
    finally:
        client.close()
    if np.isfinite(value):
        data = [None if np.isnan(v) else float(v) for v in matrix.reshape(-1)]
        body = {"inputs": [{"name": ONNX_INPUT, "datatype": "FP64", "shape": [3, 5], "data": data}]}
        response = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json=body)
        assert response.status_code == 400 and "outputs" not in response.json()
        assert where in response.json()["error"]


@pytest.mark.parametrize("rows", [60, 300])
def test_a_large_request_is_checked_as_closely(
    server: Server, model: ModelFiles, frame: pd.DataFrame, rows: int
) -> None:
    """Past a few hundred values the check is vectorised: same verdicts, same messages."""
    matrix = encode(pd.concat([frame] * 2).head(rows), model.schema).astype(np.float64)
    url = f"{server.url}/v2/models/{NAME}/infer"
    ok = httpx.post(url, json=matrix_body(matrix), timeout=30)
    assert ok.status_code == 200, ok.text  # NaN (missing) is accepted everywhere here
    region, charges = (
        model.schema.names.index("region"),
        model.schema.names.index("monthly_charges"),
    )
    for column, value, fragment in (
        (region, 2.5, "is 2.5: not a category code of 'region', which takes 0 to 3"),
        (charges, 1e39, "is 1e+39: not a finite number that fits FP32"),
    ):
        bad = matrix.copy()
        bad[rows - 7, column] = value
        bad[rows - 3, column] = value  # the first one is named
        response = httpx.post(url, json=matrix_body(bad), timeout=30)
        assert response.status_code == 400
        name = model.schema.names[column]
        assert response.json() == {
            "error": f"feature {name!r} (column {column}), row {rows - 7} {fragment}"
            + (" (its 4 categories in schema order)" if column == region else "")
        }


def test_non_finite_numbers_in_a_feature_tensor_are_refused(
    server: Server, model: ModelFiles, frame: pd.DataFrame
) -> None:
    """Per feature: binary FP32 infinity, and a numeric feature sent as the text 'inf'."""
    rows = frame.head(2)
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        for text in (False, True):
            inputs = []
            for f in model.schema.features:
                values = column_as(rows[f.name], "BYTES" if f.kind == "categorical" else "FP32")
                datatype = "BYTES" if f.kind == "categorical" else "FP32"
                if f.name == "monthly_charges":
                    values = values.copy()
                    values[0] = np.inf
                    if text:
                        values = np.array([str(v).encode() for v in values], dtype=object)
                        datatype = "BYTES"
                tensor = triton.InferInput(f.name, [2], datatype)
                tensor.set_data_from_numpy(values)
                inputs.append(tensor)
            index = model.schema.names.index("monthly_charges")
            with pytest.raises(InferenceServerException, match="400") as refused:
                client.infer(NAME, inputs)
            assert f"feature 'monthly_charges' (column {index}), row 0 is inf" in str(refused.value)
    finally:
        client.close()


def test_missing_values_where_the_schema_forbids_them(
    strict_server: Server, model: ModelFiles, frame: pd.DataFrame
) -> None:
    """A missing tenure (null) and an unseen plan (which encodes as missing) are refused;
    a missing value in a nullable column is still scored."""
    url = f"{strict_server.url}/v2/models/{NAME}/infer"
    rows = frame.dropna(subset=["tenure_months", "plan"]).head(2).copy()
    schema = httpx.get(f"{strict_server.url}/v2/models/{NAME}").json()["parameters"]
    nullable = {f["name"]: f["nullable"] for f in schema["feature_schema"]["features"]}
    assert nullable == {**dict.fromkeys(model.schema.names, True), "tenure_months": False,
                        "plan": False}  # fmt: skip

    def per_feature(values: pd.DataFrame) -> dict:
        return {
            "inputs": [
                {
                    "name": f.name,
                    "datatype": "BYTES" if f.kind == "categorical" else "FP64",
                    "shape": [len(values)],
                    "data": [None if pd.isna(v) else v for v in values[f.name]],
                }
                for f in model.schema.features
            ]
        }

    rows.loc[rows.index[1], "region"] = None  # nullable: fine
    scored = httpx.post(url, json=per_feature(rows))
    assert scored.status_code == 200, scored.text
    expected = reference(model.onnx, encode(rows, model.schema))
    assert np.max(np.abs(np.asarray(scored.json()["outputs"][0]["data"]) - expected)) <= 1e-6

    for column, value in (("tenure_months", None), ("plan", "platinum"), ("plan", None)):
        bad = rows.copy()
        bad[column] = bad[column].astype(object)
        bad.loc[bad.index[1], column] = value
        response = httpx.post(url, json=per_feature(bad))
        index = model.schema.names.index(column)
        assert response.status_code == 400, response.text
        assert response.json() == {
            "error": f"feature {column!r} (column {index}), row 1 is missing (null or NaN), "
            f"and the model does not accept a missing {column!r}"
        }


def test_schema_served_is_the_file_beside_the_model(server: Server, model: ModelFiles) -> None:
    """`parameters.feature_schema` carries what the schema file says (kinds, categories
    in code order, column order), with `nullable` defaulting to true."""
    served = httpx.get(f"{server.url}/v2/models/{NAME}").json()["parameters"]["feature_schema"]
    written = json.loads(Path(model.onnx.with_name(SCHEMA_FILE)).read_text())
    assert [{k: f[k] for k in ("name", "kind", "categories")} for f in served["features"]] == [
        {k: f[k] for k in ("name", "kind", "categories")} for f in written["features"]
    ]
    assert all(f["nullable"] is True for f in served["features"])


def test_a_missing_value_does_not_hide_a_refused_one(
    server: Server, model: ModelFiles, frame: pd.DataFrame
) -> None:
    """The numeric columns of a small request are checked together (one min, one max),
    where a missing value first in the row could mask the rest: an out-of-range number
    after a missing one is still refused and named, and the missing one alone is scored."""
    numeric = [i for i, f in enumerate(model.schema.features) if f.kind == "numeric"]
    assert len(numeric) >= 2
    first, last = numeric[0], numeric[-1]
    row = _matrix(model, frame, rows=1)[0]
    row[first] = np.nan
    url = f"{server.url}/v2/models/{NAME}/infer"

    def send(values: np.ndarray) -> httpx.Response:
        data = [None if np.isnan(v) else float(v) for v in values]
        tensor = {"name": ONNX_INPUT, "datatype": "FP64", "shape": [1, len(data)], "data": data}
        return httpx.post(url, json={"inputs": [tensor]})

    scored = send(row)
    assert scored.status_code == 200, scored.text
    assert np.isclose(
        scored.json()["outputs"][0]["data"][0],
        reference(model.onnx, row[None, :].astype(np.float32))[0],
    )
    row[last] = 1e39
    refused = send(row)
    name = model.schema.names[last]
    assert refused.status_code == 400
    assert refused.json() == {
        "error": f"feature {name!r} (column {last}), row 0 is 1e+39: "
        "not a finite number that fits FP32"
    }
