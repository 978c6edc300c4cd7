"""A model the server answers for: the ONNX Runtime session and what clients need to know.

Loading checks everything that can be checked before the first request (digest, input
layout against the feature schema, one probe prediction), so a server that is up can score.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

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

    @property
    def n_features(self) -> int:
        return len(self.schema.features)

    def predict(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        """Positive-class probability per row of a float32 [N, F] matrix in schema order."""
        (scores,) = self.session.run([PROBABILITIES], {self.input_name: rows})
        # A column slice is strided; the JSON encoder needs contiguous memory.
        return np.ascontiguousarray(scores[:, 1], dtype=np.float32)


def load_model(
    path: Path,
    schema: FeatureSchema,
    name: str,
    version: str | None = None,
    expected_digest: str | None = None,
) -> LoadedModel:
    """Load an ONNX binary classifier; `version` defaults to the file's sha256.

    The digest is taken from the very bytes the session is built from, so a file swapped
    between the check and the load cannot slip through.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read model {path}: {error.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected_digest is not None and digest != expected_digest.lower():
        raise ModelError(
            f"model {path} has sha256 {digest}, expected {expected_digest}: refusing to serve it"
        )
    session = _session(path, data)
    model = LoadedModel(
        name=name,
        version=version or digest,
        digest=digest,
        schema=schema,
        session=session,
        input_name=_single_input(path, session, len(schema.features)),
    )
    _probe(path, model)
    return model


def _session(path: Path, data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Requests are mostly single rows: a thread pool hand-off costs more than it saves, and
    # the two cores are shared with the event loop. Batching (later) amortises per-call cost.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own untyped exception classes
        raise ModelError(f"{path} is not a loadable ONNX model: {error}") from None


def _single_input(path: Path, session: ort.InferenceSession, n_features: int) -> str:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelError(f"{path} has inputs {names}; the server needs exactly one [N, F] input")
    tensor = inputs[0]
    shape = list(tensor.shape)
    if tensor.type != "tensor(float)" or len(shape) != 2:
        raise ModelError(f"{path} input {tensor.name!r} is {tensor.type} {shape}, not float [N, F]")
    if isinstance(shape[1], int) and shape[1] != n_features:
        raise ModelError(
            f"{path} input {tensor.name!r} takes {shape[1]} features, "
            f"the feature schema lists {n_features}"
        )
    return str(tensor.name)


def _probe(path: Path, model: LoadedModel) -> None:
    """Score one row, so a model without the expected output (or one that fails at run
    time) is refused at startup rather than on the first request."""
    probe = np.zeros((1, model.n_features), dtype=np.float32)
    try:
        (scores,) = model.session.run([PROBABILITIES], {model.input_name: probe})
    except Exception as error:  # ORT raises its own untyped exception classes
        outputs = [(o.name, o.type) for o in model.session.get_outputs()]
        raise ModelError(
            f"{path} cannot score a probe row into output {PROBABILITIES!r} "
            f"(outputs: {outputs}): {error}"
        ) from None
    if np.shape(scores) != (1, 2):
        raise ModelError(
            f"{path} output {PROBABILITIES!r} has shape {list(np.shape(scores))} for one row; "
            "a binary classifier's probabilities are [1, 2]"
        )
