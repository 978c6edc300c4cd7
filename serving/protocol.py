"""Open Inference Protocol v2 (REST) bodies: parse an inference request into the model's
rows, and build the responses.

A request gives its rows in one of two forms, both listed in the model metadata:
- one tensor per feature, named as the feature, shape [N] or [N, 1], in any order: BYTES
  with raw values for a categorical feature (category names), a number type for a numeric
  one. A category the model never saw, like a missing value, becomes NaN, as in training.
- one tensor named as the model's input (`input`), shape [N, F], F features in schema
  order: model-ready numbers (a categorical feature as its code, its index in the schema's
  `categories`).
Numbers in a BYTES tensor are read as text, and category codes in a number tensor are
accepted too. Every row is then checked against the schema (serving/row_check.py). The one
output is `probability`: FP32 [N], P(label = 1), inline JSON or binary as the request asks.
"""

import json
import math
from importlib import metadata
from typing import NamedTuple

import numpy as np
import orjson
from numpy.typing import NDArray

from serving.model import PLATFORM, LoadedModel
from serving.row_check import RowError
from serving.schema import Feature
from serving.tensors import (
    BYTES,
    TensorError,
    TensorHeader,
    bytes_values,
    numeric_values,
    parse_header,
)

SERVER_NAME = "mlpipe-serving"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
OUTPUT_NAME = "probability"
"""The one output tensor: FP32 [N], probability of the positive class."""
PER_FEATURE = "per_feature"
MATRIX = "matrix"
"""The two request forms, as the model metadata names them (`inputs[].parameters.form`)."""
HEADER_LENGTH = "inference-header-content-length"
"""HTTP header of the binary tensor data extension: bytes of JSON before the binary data."""


class ProtocolError(Exception):
    """The request breaks the protocol or does not fit the model; answered with 400."""


class InferRequest(NamedTuple):
    rows: NDArray[np.floating]
    """[N, F] in schema order, NaN for missing: what the ONNX graph takes (as float32)."""
    request_id: str | None
    binary_output: bool


def parse_infer_request(
    body: bytes, header_length: int | None, model: LoadedModel, max_rows: int
) -> InferRequest:
    """Check an inference request against the model and return its rows. A batch above
    `max_rows` is refused before its data is decoded."""
    json_part, binary = _split_body(body, header_length)
    payload = _json(json_part)
    if header_length is None and (plain := _plain_request(payload, model, max_rows)):
        return plain
    if type(payload) is not dict:
        raise ProtocolError("the request body must be a JSON object")
    request_id = payload.get("id")
    if request_id is not None and type(request_id) is not str:
        raise ProtocolError("'id' must be a string")
    inputs = payload.get("inputs")
    if type(inputs) is not list or not inputs:
        raise ProtocolError(
            "'inputs' must be a non-empty list: one tensor per feature, "
            f"or one tensor {model.input_name!r} [N, F]"
        )
    try:
        headers = [parse_header(tensor) for tensor in inputs]
        chunks = _binary_chunks(headers, binary)
        if len(headers) == 1 and headers[0].name == model.input_name:
            rows = _matrix(headers[0], chunks[0], model, max_rows)
        else:
            rows = _columns(headers, chunks, model, max_rows)
        model.row_check.check(rows)
    except (TensorError, RowError) as error:
        raise ProtocolError(str(error)) from None
    return InferRequest(rows, request_id, _binary_output(payload))


def _plain_request(payload: object, model: LoadedModel, max_rows: int) -> InferRequest | None:
    """The most common request, an optional string `id` and one inline FP32/FP64 [N, F]
    tensor with no parameters, read and checked in a few steps; None for anything else,
    including a value the model refuses: the general path then reads it again and explains
    what is wrong. For a single row this takes ~2.5 us instead of ~4.5 us, on a request
    path of ~15 us (measured here, benchmarks/serving.py's request)."""
    if type(payload) is not dict or not payload.keys() <= _PLAIN_KEYS:
        return None
    request_id = payload.get("id")
    inputs = payload.get("inputs")
    if (request_id is not None and type(request_id) is not str) or (
        type(inputs) is not list or len(inputs) != 1
    ):
        return None
    tensor = inputs[0]
    if type(tensor) is not dict or len(tensor) != 4 or tensor.get("name") != model.input_name:
        return None
    shape, data = tensor.get("shape"), tensor.get("data")
    if (
        tensor.get("datatype") not in _PLAIN_DATATYPES
        or type(data) is not list
        or type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
        or shape[1] != model.n_features
        or not 1 <= shape[0] <= max_rows
    ):
        return None
    try:
        rows = np.array(data, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    if rows.shape != (shape[0], shape[1]):
        if rows.ndim != 1 or rows.size != shape[0] * shape[1]:
            return None
        rows = rows.reshape(shape)
    if not model.row_check.accepts(rows):
        return None
    return InferRequest(rows, request_id, False)


_PLAIN_KEYS = frozenset(("id", "inputs"))
_PLAIN_DATATYPES = ("FP32", "FP64")


def _json(text: bytes) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        strict_error = error
    if "depth limit" in str(strict_error):
        # Hostile nesting: no second parser gets to recurse into it.
        raise ProtocolError(f"malformed JSON: {strict_error}")
    # tritonclient (rapidjson) writes a missing float as the token NaN, which strict JSON
    # rejects and the standard library's parser accepts; only requests the fast parser
    # refused pay for the second parse.
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(f"malformed JSON: {strict_error}") from None


_NO_BINARY = memoryview(b"")


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, _NO_BINARY
    if not 0 < header_length <= len(body):
        raise ProtocolError(
            f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes"
        )
    view = memoryview(body)
    return body[:header_length], view[header_length:]


def _binary_chunks(headers: list[TensorHeader], binary: memoryview) -> list[memoryview | None]:
    """Each tensor's slice of the binary section, in input order, as the extension lays
    them out; None for a tensor whose data is inline."""
    chunks: list[memoryview | None] = []
    offset = 0
    for header in headers:
        if header.binary_size is None:
            chunks.append(None)
            continue
        chunks.append(binary[offset : offset + header.binary_size])
        offset += header.binary_size
    if offset != len(binary):
        raise ProtocolError(
            f"the inputs declare {offset} bytes of binary data, the body carries {len(binary)}"
        )
    return chunks


def _check_rows(rows: int, max_rows: int) -> None:
    if rows < 1:
        raise ProtocolError("a request needs at least one row")
    if rows > max_rows:
        raise ProtocolError(
            f"batch of {rows} rows exceeds the server's max batch size of {max_rows} rows"
        )


def _matrix(
    header: TensorHeader, binary: memoryview | None, model: LoadedModel, max_rows: int
) -> NDArray[np.floating]:
    width = model.n_features
    if len(header.shape) != 2 or header.shape[1] != width:
        raise ProtocolError(
            f"input {header.name!r} has shape {list(header.shape)}; expected [N, {width}]"
        )
    _check_rows(header.shape[0], max_rows)
    if header.datatype != BYTES:
        return numeric_values(header, binary).reshape(header.shape)
    values = bytes_values(header, binary)
    rows = np.empty(header.shape, dtype=np.float64)
    for index, feature in enumerate(model.schema.features):
        rows[:, index] = _encode(feature, values[index::width])
    return rows


def _columns(
    headers: list[TensorHeader],
    chunks: list[memoryview | None],
    model: LoadedModel,
    max_rows: int,
) -> NDArray[np.floating]:
    features = model.schema.names
    given = [header.name for header in headers]
    unknown = [name for name in given if name not in features]
    missing = [name for name in features if name not in given]
    if unknown or missing or len(given) != len(features):
        raise ProtocolError(
            f"inputs {given} fit neither form: one tensor per feature {features}, "
            f"or one tensor {model.input_name!r} [N, {len(features)}]"
            + (f"; unknown: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else "")
        )
    n = headers[0].shape[0] if headers[0].shape else 0
    for header in headers:
        if header.shape not in ((n,), (n, 1)):
            raise ProtocolError(
                f"input {header.name!r} has shape {list(header.shape)}; every feature "
                f"tensor must be [N] or [N, 1] with the same N ({n} from {headers[0].name!r})"
            )
    _check_rows(n, max_rows)
    by_name = dict(zip(given, zip(headers, chunks, strict=True), strict=True))
    rows = np.empty((n, len(features)), dtype=np.float64)
    for index, feature in enumerate(model.schema.features):
        header, binary = by_name[feature.name]
        if header.datatype == BYTES:
            rows[:, index] = _encode(feature, bytes_values(header, binary))
        else:
            rows[:, index] = numeric_values(header, binary).reshape(-1)
    return rows


def _encode(feature: Feature, values: list[str | None]) -> NDArray[np.float64]:
    """Raw values as the model saw them in training: a category's code, a number; NaN
    for a missing value or a category the model never saw."""
    if feature.kind == "categorical":
        codes = feature.codes
        return np.fromiter(
            (codes.get(value, math.nan) if value is not None else math.nan for value in values),
            dtype=np.float64,
            count=len(values),
        )
    return np.fromiter(
        (_number(feature, value) for value in values), dtype=np.float64, count=len(values)
    )


def _number(feature: Feature, value: str | None) -> float:
    if value is None or not value.strip():
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise ProtocolError(
            f"feature {feature.name!r} is numeric; {value!r} is not a number"
        ) from None


def _binary_output(payload: dict[str, object]) -> bool:
    """Binary if the requested output asks for it, or, with no outputs listed, if the
    request's `binary_data_output` parameter does (tritonclient's default)."""
    outputs = payload.get("outputs")
    if outputs is None:
        parameters = payload.get("parameters")
        return isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    if (
        not isinstance(outputs, list)
        or not all(isinstance(output, dict) for output in outputs)
        or [output.get("name") for output in outputs] != [OUTPUT_NAME]
    ):
        raise ProtocolError(f"'outputs' may only request {OUTPUT_NAME!r}, the model's one output")
    parameters = outputs[0].get("parameters")
    if isinstance(parameters, dict) and parameters.get("classification"):
        raise ProtocolError("the classification extension is not supported")
    return isinstance(parameters, dict) and parameters.get("binary_data") is True


def infer_response(
    model: LoadedModel,
    scores: NDArray[np.float32],
    request_id: str | None,
    binary: bool,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when the scores follow as binary."""
    output: dict[str, object] = {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [len(scores)]}
    if binary:
        output["parameters"] = {"binary_data_size": scores.nbytes}
    else:
        output["data"] = scores
    body: dict[str, object] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [output],
    }
    if request_id is not None:
        body["id"] = request_id
    encoded = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if binary:
        return encoded + scores.astype("<f4", copy=False).tobytes(), len(encoded)
    return encoded, None


def model_metadata(model: LoadedModel) -> dict[str, object]:
    """What a client needs to build a request without reading our code: `inputs` lists
    both forms (each tensor's `parameters.form` says which: send the one `matrix` input, or
    every `per_feature` input), and `parameters.feature_schema` is the model's feature
    schema (names in column order, kinds, categories in code order, nullability)."""
    features = model.schema.features
    per_feature = [
        {
            "name": feature.name,
            "datatype": BYTES if feature.kind == "categorical" else "FP32",
            "shape": [-1],
            "parameters": {"form": PER_FEATURE, "column": column},
        }
        for column, feature in enumerate(features)
    ]
    matrix = {
        "name": model.input_name,
        "datatype": "FP32",
        "shape": [-1, model.n_features],
        "parameters": {"form": MATRIX, "features": model.schema.names},
    }
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        # The matrix first: clients written against one [N, F] input read inputs[0].
        "inputs": [matrix, *per_feature],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]}],
        # An extension of the core protocol's metadata, which has no place for a schema.
        "parameters": {"feature_schema": model.schema.model_dump(mode="json")},
    }


def server_metadata() -> dict[str, object]:
    return {"name": SERVER_NAME, "version": metadata.version("mlpipe"), "extensions": EXTENSIONS}
