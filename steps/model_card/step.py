"""model-card: the card of the evaluated model, published with it in the registry.

It reads what the pipeline recorded (the audit result, provenance.json, the model bundle's
feature schema, the quantize report, evaluation.json) and the provenance chain behind the
ONNX file, and writes `model-card.json` and `model-card.html` as artifacts and into the
model's registry folder, `registry/<model>/versions/<onnx digest>/`: content-addressed,
so the card sits beside the model whenever deploy promotes it, and a model never deployed
leaves only an unreferenced folder.
"""

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow.compute as pc

from steps.core.attestation import RunDetails
from steps.core.errors import BadInput, GateFailed
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.model_registry import check_model_name, version_key
from steps.core.names import Artifact, ModelFile
from steps.core.registry import MODEL_NAME
from steps.core.specs import DataSpec, ModelCardSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import read_arrow
from steps.data.features import load_schema
from steps.evaluate.evaluation import Evaluation
from steps.model_card.card import ModelCard, TimeRange, build_card, chain_statements
from steps.model_card.report import render_card
from steps.provenance.chain import load_chain
from steps.provenance.step import ProvenanceRecord
from steps.quantize.report import QuantizeReport


def time_range(store: ArtifactStore, uri: str, data: DataSpec, column: str) -> TimeRange:
    """The first and last value of the data's time column (missing values aside)."""
    table = read_arrow(uri, data, store)
    if column not in table.column_names:
        raise BadInput(
            f"model_card.time_column {column!r} is not a column of {uri} "
            f"(columns: {', '.join(table.column_names)})"
        )
    bounds = pc.min_max(table.column(column))
    start, end = bounds["min"].as_py(), bounds["max"].as_py()
    if start is None:
        raise BadInput(f"model_card.time_column {column!r} of {uri} holds no value")
    return TimeRange(column=column, start=str(start), end=str(end))


def publish(store: ArtifactStore, model_name: str, card: ModelCard, page: str) -> list[str]:
    """The card into the model's registry folder, beside the model; returns the keys."""
    folder = version_key(model_name, card.model_details.provenance.onnx_digest)
    keys = [
        f"{folder}/{Artifact.MODEL_CARD_JSON.filename}",
        f"{folder}/{Artifact.MODEL_CARD.filename}",
    ]
    store.put_bytes(keys[0], _json(card).encode())
    store.put_bytes(keys[1], page.encode())
    return keys


def run(ctx: StepContext) -> Outcome:
    model_name, data, spec = ctx.get(MODEL_NAME), ctx.spec(DataSpec), ctx.spec(ModelCardSpec)
    check_model_name(model_name)
    evaluation = Evaluation.model_validate_json(ctx.artifact(Artifact.EVALUATION).read_bytes())
    quantization = QuantizeReport.model_validate_json(
        ctx.artifact(Artifact.QUANTIZE_REPORT).read_bytes()
    )
    if quantization.onnx_digest != evaluation.onnx_digest:
        raise GateFailed(
            f"the quantize report describes ONNX sha256 {quantization.onnx_digest}, the "
            f"evaluation sha256 {evaluation.onnx_digest}: the card would mix two models"
        )
    provenance = ProvenanceRecord.model_validate_json(
        ctx.artifact(Artifact.PROVENANCE).read_bytes()
    )
    audit: dict[str, Any] = json.loads(ctx.artifact(Artifact.AUDIT_RESULT).read_bytes())
    store = ctx.store
    ctx.progress(0, 2)
    chain = load_chain(store, digest=evaluation.onnx_digest)
    details = RunDetails.from_env(ctx.environ)
    card = build_card(
        model_name=model_name,
        spec=spec,
        data=data,
        evaluation=evaluation,
        quantization=quantization,
        provenance=provenance,
        audit=audit,
        schema=load_schema(ctx.artifact(Artifact.MODEL) / ModelFile.FEATURE_SCHEMA),
        chain=chain_statements(chain.links, store.uri),
        run={"config_digest": details.config_digest, "code_version": details.code_version},
        registry_uri=store.uri(version_key(model_name, evaluation.onnx_digest)) + "/",
        time_range=None
        if spec.time_column is None
        else time_range(store, provenance.source_uri, data, spec.time_column),
        today=datetime.now(UTC).date(),
    )
    ctx.progress(1, 2)
    page = render_card(card)
    ctx.output(Artifact.MODEL_CARD_JSON).write_text(_json(card))
    ctx.output(Artifact.MODEL_CARD).write_text(page)
    publish(store, model_name, card, page)
    ctx.progress(2, 2)
    # The registry's copies are not subjects: a later run of the same model (a memoized
    # retraining) rewrites them, as deploy rewrites record.json; the run's artifacts stay.
    return Outcome(
        statement=Statement(
            parameters={"model_name": model_name, "model_card_spec": spec.model_dump(mode="json")}
        )
    )


def _json(card: ModelCard) -> str:
    return card.model_dump_json(indent=2, exclude_none=True) + "\n"
