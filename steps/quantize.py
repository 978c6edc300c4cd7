"""The ONNX export and its parity gate: `python -m steps quantize ...`.

The booster becomes an ONNX tree ensemble (onnxmltools) that the model server runs with
ONNX Runtime. Before it goes anywhere, its probabilities on the test split are compared
with XGBoost's own: a difference above the tolerance stops the pipeline, naming the row.
This issue exports the float32 baseline; smaller re-encodings are candidates for later,
held to the same parity gate.

The exported model's interface, which evaluation, deployment and the benchmarks rely on:
one float32 input `input` of shape [rows, features] (steps.features.encode order), and
an output `probabilities` of shape [rows, 2] whose column 1 is P(label = 1).
"""

import argparse
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import onnxruntime
import xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from xgboost.core import XGBoostError

from steps.attestation import attest
from steps.dataset import Split, load_split
from steps.errors import BadInput, GateFailed
from steps.features import encode, load_schema
from steps.names import Artifact, ModelFile, Param, Step
from steps.outputs import write_parameter
from steps.specs import QuantizeSpec
from steps.store import ArtifactStore

ONNX_INPUT = "input"
ONNX_PROBABILITIES = "probabilities"
# A fixed graph name: the converter's default is a random UUID, which would give the same
# model a new digest on every export.
GRAPH_NAME = "mlpipe_xgboost"


def load_booster(model_dir: Path) -> xgboost.Booster:
    path = model_dir / ModelFile.BOOSTER
    if not path.is_file():
        raise BadInput(f"model bundle {model_dir} has no {ModelFile.BOOSTER}")
    try:
        return xgboost.Booster(model_file=bytearray(path.read_bytes()))
    except XGBoostError as error:
        # The first line holds XGBoost's reason; the rest is a native stack trace.
        reason = str(error).splitlines()[0]
        raise BadInput(f"{path} is not a readable XGBoost model: {reason}") from None


def to_onnx(booster: xgboost.Booster, target_opset: int) -> bytes:
    """The booster as a serialized ONNX model (same bytes for the same booster)."""
    features = booster.num_features()
    # onnxmltools reads split features from the booster's text dump and only understands
    # `f<column index>`; the real names stay in feature-schema.json.
    renamed = booster.copy()
    renamed.feature_names = [f"f{index}" for index in range(features)]
    model = onnxmltools.convert_xgboost(
        renamed,
        name=GRAPH_NAME,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, features]))],
        target_opset=target_opset,
    )
    return bytes(model.SerializeToString())


def open_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on the CPU for a model with the interface above; anything
    else (a corrupted file, another model) is BadInput."""
    where = str(model) if isinstance(model, Path) else "exported model"
    if isinstance(model, Path) and not model.is_file():
        raise BadInput(f"ONNX model {model} does not exist")
    try:
        session = onnxruntime.InferenceSession(
            str(model) if isinstance(model, Path) else model, providers=["CPUExecutionProvider"]
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


@dataclass(frozen=True)
class Parity:
    rows: int
    max_abs_diff: float
    worst_row: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def check_parity(
    session: onnxruntime.InferenceSession,
    booster: xgboost.Booster,
    matrix: npt.NDArray[np.float32],
    tolerance: float,
) -> Parity:
    """Compare ONNX and XGBoost probabilities row by row; GateFailed beyond `tolerance`."""
    if len(matrix) == 0:
        raise BadInput("parity needs rows: the test split is empty")
    expected = booster.inplace_predict(matrix)
    diff = np.abs(predict_proba(session, matrix).astype(np.float64) - expected)
    worst = int(np.argmax(diff))
    parity = Parity(len(matrix), float(diff[worst]), worst, tolerance)
    if not parity.passed:
        raise GateFailed(
            f"ONNX export disagrees with XGBoost: max |P_onnx - P_xgboost| = "
            f"{parity.max_abs_diff:.3g} at test row {worst} (of {len(matrix)}), "
            f"tolerance {tolerance:g}"
        )
    return parity


@dataclass(frozen=True)
class Export:
    model: bytes
    digest: str
    parity: Parity
    report: dict[str, object]


def quantize(store: ArtifactStore, model_dir: Path, dataset_uri: str, spec: QuantizeSpec) -> Export:
    """Export the bundle's booster to ONNX and gate it on parity over the test split."""
    booster = load_booster(model_dir)
    schema = load_schema(model_dir / ModelFile.FEATURE_SCHEMA)
    if booster.num_features() != len(schema.features):
        raise BadInput(
            f"model bundle {model_dir}: the booster takes {booster.num_features()} features, "
            f"its feature schema lists {len(schema.features)}"
        )
    exported = to_onnx(booster, spec.target_opset)
    matrix = encode(load_split(store, dataset_uri, Split.TEST), schema)
    parity = check_parity(open_session(exported), booster, matrix, spec.parity_tolerance)
    digest = hashlib.sha256(exported).hexdigest()
    report: dict[str, object] = {
        "model_digest": hashlib.sha256((model_dir / ModelFile.BOOSTER).read_bytes()).hexdigest(),
        "onnx_digest": digest,
        "dataset_uri": dataset_uri,
        "encoding": "float32",
        "target_opset": spec.target_opset,
        "input": ONNX_INPUT,
        "output": ONNX_PROBABILITIES,
        "parity": {**asdict(parity), "passed": parity.passed},
        "versions": {
            module.__name__: module.__version__
            for module in (xgboost, onnxmltools, onnx, onnxruntime)
        },
    }
    return Export(exported, digest, parity, report)


def write_outputs(export: Export, out: Path) -> None:
    """model.onnx appears whole or not at all (written aside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / Artifact.ONNX.filename
    staging = target.with_name(f".{target.name}.part")
    staging.write_bytes(export.model)
    staging.replace(target)
    report = json.dumps(export.report, indent=2) + "\n"
    (out / Artifact.QUANTIZE_REPORT.filename).write_text(report)
    write_parameter(out, Param.ONNX_DIGEST, export.digest)
    write_parameter(out, Param.PARITY_MAX_DIFF, export.parity.max_abs_diff)


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps quantize", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--dataset-uri", required=True)
    parser.add_argument("--quantize-spec", required=True, help="QuantizeSpec as JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    spec = QuantizeSpec.from_json_arg(args.quantize_spec)
    store = ArtifactStore.from_env(os.environ)
    write_outputs(quantize(store, args.model, args.dataset_uri, spec), args.out)
    attest(
        Step.QUANTIZE, args.out, store, started,
        outputs=[args.out / Artifact.ONNX.filename, args.out / Artifact.QUANTIZE_REPORT.filename],
        input_paths=[args.model], datasets=[args.dataset_uri],
        parameters={"quantize_spec": spec.model_dump(mode="json")},
    )  # fmt: skip
    return 0
