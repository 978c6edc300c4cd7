"""A model the server answers for: the ONNX Runtime session and what clients need to know.

Building one checks everything that can be checked before the first request (input layout
against the feature schema, one probe prediction), so a server that is up can score.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from serving.row_check import RowCheck
from serving.schema import FeatureSchema

PLATFORM = "onnxruntime_onnx"
"""Model metadata `platform`, in the naming Triton and KServe use for ONNX models."""
PROBABILITIES = "probabilities"
"""The ONNX output the server reads: [N, 2] class probabilities, column 1 the positive
class. This is the interface the pipeline's export (onnxmltools) produces."""


class ModelError(Exception):
    """The model file cannot be served as given; the message says why."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    digest: str
    """sha256 hex of the ONNX bytes the session was built from."""
    schema: FeatureSchema
    session: ort.InferenceSession
    input_name: str
    row_check: RowCheck

    @cached_property
    def n_features(self) -> int:
        return len(self.schema.features)

    def predict(self, rows: NDArray[np.floating]) -> NDArray[np.float32]:
        """Positive-class probability per row of an [N, F] matrix in schema order, whose
        values the row check accepted (so the cast to float32 cannot overflow)."""
        feed = {self.input_name: rows.astype(np.float32, copy=False)}
        (scores,) = self.session.run([PROBABILITIES], feed)
        # A column slice is strided; the JSON encoder needs contiguous memory.
        return np.ascontiguousarray(scores[:, 1], dtype=np.float32)


def build_model(
    name: str, version: str, data: bytes, digest: str, schema: FeatureSchema, where: str
) -> LoadedModel:
    """A session on `data` (the ONNX bytes whose sha256 is `digest`, already verified),
    checked against the schema and by one probe prediction. `where` names it in errors."""
    session = _session(where, data)
    model = LoadedModel(
        name=name,
        version=version,
        digest=digest,
        schema=schema,
        session=session,
        input_name=_single_input(where, session, len(schema.features)),
        row_check=RowCheck(schema),
    )
    _probe(where, model)
    return model


def _session(where: str, data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Requests are mostly single rows: a thread pool hand-off costs more than it saves, and
    # the cores are shared with the event loop. Dynamic batching amortises per-call cost.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped exception classes
        raise ModelError(f"{where} is not a loadable ONNX model: {error}") from None


def _single_input(where: str, session: ort.InferenceSession, n_features: int) -> str:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelError(f"{where} has inputs {names}; the server needs exactly one [N, F] input")
    tensor = inputs[0]
    shape = list(tensor.shape)
    if tensor.type != "tensor(float)" or len(shape) != 2:
        raise ModelError(
            f"{where} input {tensor.name!r} is {tensor.type} {shape}, not float [N, F]"
        )
    if isinstance(shape[1], int) and shape[1] != n_features:
        raise ModelError(
            f"{where} input {tensor.name!r} takes {shape[1]} features, "
            f"the feature schema lists {n_features}"
        )
    return str(tensor.name)


def _probe(where: str, model: LoadedModel) -> None:
    """Score one row, so a model without the expected output (or one that fails at run
    time) is refused at startup rather than on the first request."""
    probe = np.zeros((1, model.n_features), dtype=np.float32)
    try:
        (scores,) = model.session.run([PROBABILITIES], {model.input_name: probe})
    except Exception as error:  # ORT raises its own untyped exception classes
        outputs = [(o.name, o.type) for o in model.session.get_outputs()]
        raise ModelError(
            f"{where} cannot score a probe row into output {PROBABILITIES!r} "
            f"(outputs: {outputs}): {error}"
        ) from None
    if np.shape(scores) != (1, 2):
        raise ModelError(
            f"{where} output {PROBABILITIES!r} has shape {list(np.shape(scores))} for one row; "
            "a binary classifier's probabilities are [1, 2]"
        )
