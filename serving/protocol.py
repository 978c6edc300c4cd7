"""Open Inference Protocol v2 (REST) bodies: parse an inference request, build responses.

Only JSON tensors are supported (no binary extension). The model takes one FP32 [N, F]
tensor; FP64 is accepted and narrowed, since the ONNX graph computes in float32 anyway.
`null` in the data means a missing value (JSON has no NaN), exactly as XGBoost treats NaN.
"""

from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from serving.model import PLATFORM, LoadedModel

SERVER_NAME = "mlpipe-serving"
OUTPUT_NAME = "probability"
"""The one output tensor: FP32 [N], probability of the positive class."""
INPUT_DATATYPES = frozenset({"FP32", "FP64"})


class ProtocolError(Exception):
    """The request breaks the protocol or does not fit the model; answered with 400."""


@dataclass(frozen=True)
class InferRequest:
    rows: NDArray[np.float32]
    request_id: str | None


def parse_infer_request(body: bytes, model: LoadedModel) -> InferRequest:
    """Check an inference request against the model's one input and return its rows."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(f"malformed JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ProtocolError("the request body must be a JSON object")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(f"'inputs' must be a list of one tensor ({model.input_name!r})")
    _check_requested_outputs(payload.get("outputs"))
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    return InferRequest(rows=_rows(inputs[0], model), request_id=request_id)


def _rows(tensor: dict[str, Any], model: LoadedModel) -> NDArray[np.float32]:
    name = tensor.get("name")
    if name != model.input_name:
        raise ProtocolError(
            f"unknown input {name!r}; model {model.name!r} takes {model.input_name!r}"
        )
    datatype = tensor.get("datatype")
    if datatype not in INPUT_DATATYPES:
        raise ProtocolError(f"input {name!r} has datatype {datatype!r}; use FP32 or FP64")
    n_features = model.n_features
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(dim) is int for dim in shape)
        or shape[0] < 1
        or shape[1] != n_features
    ):
        raise ProtocolError(f"input {name!r} has shape {shape}; expected [N, {n_features}], N >= 1")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r} needs 'data': a list of numbers")
    try:
        rows = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError):
        raise ProtocolError(
            f"input {name!r} data must be numbers (null for missing), flat or nested [N, F]"
        ) from None
    expected = shape[0] * n_features
    if rows.size != expected or rows.ndim > 2 or (rows.ndim == 2 and rows.shape[1] != n_features):
        raise ProtocolError(
            f"input {name!r} data has shape {list(rows.shape)}; shape {shape} needs "
            f"{expected} values, flat or as {shape[0]} rows of {n_features}"
        )
    return rows.reshape(shape[0], n_features)


def _check_requested_outputs(outputs: object) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ProtocolError("'outputs' must be a list of objects")
    unknown = [o.get("name") for o in outputs if o.get("name") != OUTPUT_NAME]
    if unknown:
        raise ProtocolError(f"unknown outputs {unknown}; this model has {OUTPUT_NAME!r}")


def infer_response(
    model: LoadedModel, probabilities: NDArray[np.float32], request_id: str | None
) -> bytes:
    body: dict[str, object] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [
            {
                "name": OUTPUT_NAME,
                "datatype": "FP32",
                "shape": [len(probabilities)],
                "data": probabilities,
            }
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def model_metadata(model: LoadedModel) -> dict[str, object]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [
            {
                "name": model.input_name,
                "datatype": "FP32",
                "shape": [-1, model.n_features],
                # Not in the core protocol: the column order clients must build rows in.
                "parameters": {"features": model.schema.names},
            }
        ],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1]}],
    }


def server_metadata() -> dict[str, object]:
    return {"name": SERVER_NAME, "version": metadata.version("mlpipe"), "extensions": []}
