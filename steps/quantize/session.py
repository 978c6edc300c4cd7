"""Running the pipeline's ONNX models in ONNX Runtime: the interface and the session options.

The interface every exported model has, which evaluation, deployment and the model server
rely on: one float32 input `input` of shape [rows, features] (steps.data.features.encode order),
and an output `probabilities` of shape [rows, 2] whose column 1 is P(label = 1).

The session options are tuned here once, for the steps that score (quantize, evaluate,
drift, deploy). serving/ may not import steps/, so serving/model.py sets the same options
itself.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime

from steps.core.errors import BadInput

ONNX_INPUT = "input"
ONNX_PROBABILITIES = "probabilities"
SCORE_CHUNK_ROWS = 65_536
"""Rows per `score_all` call: enough to amortise a call, small enough that the threads share
the rows out evenly when one core is busier than the other."""


def session_options() -> onnxruntime.SessionOptions:
    """Options for tree ensembles: all graph optimisations; sequential execution, since the
    graph is a chain; one intra-op thread, because on a shared 2-core machine a second one
    made neither single rows nor 1024-row batches faster (the hand-off to a busy core costs
    what it saves; measured with benchmarks/inference.py's model), and the process stays a
    good neighbour. The other options tried (denormals as zero, no spinning, basic graph
    optimisation) changed nothing or were slower: README, Benchmarks."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def open_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on the CPU for a model with the interface above; anything
    else (a corrupted file, another model) is BadInput."""
    where = str(model) if isinstance(model, Path) else "exported model"
    if isinstance(model, Path) and not model.is_file():
        raise BadInput(f"ONNX model {model} does not exist")
    try:
        session = onnxruntime.InferenceSession(
            str(model) if isinstance(model, Path) else model,
            session_options(),
            providers=["CPUExecutionProvider"],
        )
    except Exception as error:  # ORT's pybind errors (InvalidProtobuf, ...) subclass Exception
        reason = " ".join(str(error).split())
        raise BadInput(f"{where} is not a valid ONNX model: {reason}") from None
    inputs = [node.name for node in session.get_inputs()]
    outputs = [node.name for node in session.get_outputs()]
    if inputs != [ONNX_INPUT] or ONNX_PROBABILITIES not in outputs:
        raise BadInput(
            f"{where} has inputs {inputs} and outputs {outputs}; expected input "
            f"{ONNX_INPUT!r} and output {ONNX_PROBABILITIES!r}"
        )
    return session


def predict_proba(
    session: onnxruntime.InferenceSession, matrix: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """P(label = 1) for each row of an encoded matrix."""
    (probabilities,) = session.run([ONNX_PROBABILITIES], {ONNX_INPUT: matrix})
    return np.asarray(probabilities, dtype=np.float32)[:, 1]


def score_all(
    session: onnxruntime.InferenceSession,
    matrix: npt.NDArray[np.float32],
    threads: int | None = None,
) -> npt.NDArray[np.float32]:
    """`predict_proba` on every row, in chunks scored in parallel on the cores available.

    The same numbers as one `predict_proba` call: with one intra-op thread ONNX Runtime scores
    each row on its own, whatever else is in the batch, and `run` releases the GIL. More
    intra-op threads would not do: the tree ensemble then splits the trees of a batch across
    threads and adds their partial sums, which moves the last bits of a probability (up to
    4e-7 on the 4M-row benchmark's model) and was slower on a shared 2-core machine.
    """
    workers = threads or len(os.sched_getaffinity(0))
    chunks = [
        matrix[start : start + SCORE_CHUNK_ROWS]
        for start in range(0, len(matrix), SCORE_CHUNK_ROWS)
    ]
    if workers == 1 or len(chunks) <= 1:
        return predict_proba(session, matrix)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda chunk: predict_proba(session, chunk), chunks))
    return np.concatenate(parts)
