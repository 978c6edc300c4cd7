"""The model card step on real artifacts: a dataset provenanced and audited, a model trained,
quantized and evaluated by the real steps (real SeaweedFS, real ONNX Runtime), then
`python -m steps model-card` as its container runs it."""

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from steps.audit.step import run_audit
from steps.core import harness
from steps.core.attestation import open_envelope
from steps.core.model_registry import version_key
from steps.core.names import Artifact, Env
from steps.core.registry import EVALUATE, QUANTIZE
from steps.core.specs import (
    AuditSpec,
    DataSpec,
    EvaluateSpec,
    ModelCardSpec,
    Owner,
    QuantizeSpec,
    Risk,
)
from steps.core.store import ArtifactStore, file_sha256
from steps.data.synth import data_spec, generate
from steps.model_card.card import SCHEMA_VERSION, ModelCard
from steps.provenance.step import run_provenance
from tests.support.audit import SUITE
from tests.support.commands import run_step
from tests.support.datasets import quick_bundle
from tests.support.s3 import fresh_bucket, store_env
from workflows.s3server import EmbeddedS3

DATA = data_spec().model_copy(update={"exclude": ["signup_date"]})
CARD = ModelCardSpec(
    overview="Churn risk <script>alert(1)</script>",
    owners=[Owner(name="Retention analytics", contact="ml@example.com")],
    licenses=["proprietary"],
    users=["the retention team"],
    use_cases=["rank customers by churn risk"],
    limitations=["synthetic training data"],
    ethical_considerations=[Risk(name="age is a feature", mitigation_strategy="review slices")],
    sensitive_data=["customer_id", "age"],
    time_column="signup_date",
)
MCT_SECTIONS = {
    "schema_version", "model_details", "model_parameters", "quantitative_analysis",
    "considerations",
}  # fmt: skip
"""The top level of the Model Card Toolkit's schema (v0.0.2), which allows nothing else."""


@dataclass(frozen=True)
class Recorded:
    """What the pipeline recorded about one model, as the card step gets it."""

    store: ArtifactStore
    env: dict[str, str]
    inputs: dict[str, Path]
    onnx_digest: str


@pytest.fixture(scope="module")
def recorded(s3_server: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("card")
    frame = generate(3000, seed=5)
    frame["signup_date"] = [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(len(frame))]
    data = folder / "customers.csv"
    frame.to_csv(data, index=False)
    with fresh_bucket(s3_server) as store:
        env = {**store_env(s3_server, store), Env.CONFIG_DIGEST.value: "c" * 64,
               Env.CODE_VERSION.value: "test-card"}  # fmt: skip
        record = run_provenance(str(data), DATA, 1, store, folder / "provenance")
        run_audit(str(data), DATA, AuditSpec(suite=SUITE, min_rows=100), store, folder / "audit")
        bundle = quick_bundle(store, record.dataset_uri, folder / "model")
        quantized, evaluated = folder / "quantize", folder / "evaluate"
        quantize = QuantizeSpec().model_dump_json()
        harness.run(QUANTIZE, [
            "--dataset-uri", record.dataset_uri, "--quantize-spec", quantize,
            "--model", str(bundle), "--out", str(quantized)], env)  # fmt: skip
        spec = EvaluateSpec(min_auc=0.5, bootstrap_rounds=100, min_slice_rows=200)
        harness.run(EVALUATE, [
            "--dataset-uri", record.dataset_uri, "--model-name", "churn",
            "--evaluate-spec", spec.model_dump_json(), "--onnx", str(quantized / "model.onnx"),
            "--model", str(bundle), "--out", str(evaluated)], env)  # fmt: skip
        inputs = {
            Artifact.AUDIT_RESULT.name: folder / "audit" / Artifact.AUDIT_RESULT.filename,
            Artifact.PROVENANCE.name: folder / "provenance" / Artifact.PROVENANCE.filename,
            Artifact.MODEL.name: bundle,
            Artifact.QUANTIZE_REPORT.name: quantized / Artifact.QUANTIZE_REPORT.filename,
            Artifact.EVALUATION.name: evaluated / Artifact.EVALUATION.filename,
        }
        yield Recorded(store, env, inputs, file_sha256(quantized / "model.onnx"))


def card_step(
    recorded: Recorded, out: Path, card: ModelCardSpec = CARD, data: DataSpec = DATA, **swap: Path
) -> Any:
    args = ["model-card", "--model-name", "churn", "--data-spec", data.model_dump_json(),
            "--model-card-spec", card.model_dump_json(), "--out", str(out)]  # fmt: skip
    for name, path in {**recorded.inputs, **swap}.items():
        args += [f"--{name}", str(path)]
    return run_step(args, recorded.env)


def test_the_card_gathers_what_a_reviewer_needs_and_is_published_with_the_model(
    recorded: Recorded, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = card_step(recorded, out)
    assert result.returncode == 0, result.stderr

    raw = json.loads((out / Artifact.MODEL_CARD_JSON.filename).read_text())
    assert set(raw) == MCT_SECTIONS and raw["schema_version"] == SCHEMA_VERSION
    card = ModelCard.model_validate(raw)
    details, parameters = card.model_details, card.model_parameters
    analysis, considerations = card.quantitative_analysis, card.considerations

    # The version is the served file, and its provenance chain leads to the step that made it.
    assert details.version.name == f"sha256:{recorded.onnx_digest}"
    assert details.version.diff.startswith("first version")
    provenance = details.provenance
    assert provenance.onnx_digest == recorded.onnx_digest
    assert (provenance.config_digest, provenance.code_version) == ("c" * 64, "test-card")
    producers = [link for link in provenance.chain if link.step == "quantize"]
    assert [s.sha256 for s in producers[0].subjects if s.name == "model.onnx"] == [
        recorded.onnx_digest
    ]
    assert recorded.store.exists(producers[0].statement.split("/", 3)[3])

    # The data: rows and digests as provenance recorded them, the audit, the time range.
    evaluation = json.loads(recorded.inputs["evaluation"].read_text())
    source, train, valid, test = parameters.data
    assert source.rows == 3000 == train.rows + valid.rows + test.rows
    assert test.rows == evaluation["metrics"]["rows"]
    assert source.audit is not None and source.audit.passed
    assert source.time_range is not None
    assert (source.time_range.start, source.time_range.end) == ("2025-01-01", "2025-12-28")
    assert source.sensitive.sensitive_data == ["customer_id", "age"]
    assert "'churned' is 'yes'" in parameters.output_format
    assert [f.key for f in parameters.input_format_map][:3] == [
        f["name"]
        for f in json.loads((recorded.inputs["model"] / "feature-schema.json").read_text())[
            "features"
        ]
    ][:3]

    # Metrics with their intervals, overall and per slice, as evaluate measured them.
    overall = {m.type: m for m in analysis.performance_metrics if m.slice is None}
    assert overall["auc"].value == evaluation["metrics"]["auc"]
    interval = overall["auc"].confidence_interval
    assert interval is not None
    assert (interval.lower_bound, interval.upper_bound) == (
        evaluation["intervals"]["auc"]["low"], evaluation["intervals"]["auc"]["high"],
    )  # fmt: skip
    sliced = {m.slice for m in analysis.performance_metrics if m.slice is not None}
    assert sliced == {s["name"] for s in evaluation["slices"] if s["metrics"] is not None}
    assert analysis.calibration.ece == evaluation["metrics"]["ece"]
    report = json.loads(recorded.inputs["quantize-report"].read_text())
    assert analysis.calibration.method == report["calibration"]["method"]
    assert analysis.calibration.ece_uncalibrated == report["test_ece_before"]
    assert len(analysis.robustness) == len(evaluation["robustness"]) > 0
    quantization = parameters.quantization
    assert quantization.encoding == report["encoding"]
    assert considerations.users[0].description == "the retention team"
    assert considerations.tradeoffs[-1].description.startswith(f"served as {report['encoding']}")

    # Published with the model, byte for byte, and attested.
    folder = version_key("churn", recorded.onnx_digest)
    for artifact in (Artifact.MODEL_CARD, Artifact.MODEL_CARD_JSON):
        stored = recorded.store.get_bytes(f"{folder}/{artifact.filename}")
        assert stored == (out / artifact.filename).read_bytes()
    statement = open_envelope(json.loads((out / Artifact.ATTESTATION.filename).read_text()), None)
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    page = (out / Artifact.MODEL_CARD.filename).read_bytes()
    assert subjects[Artifact.MODEL_CARD.filename] == hashlib.sha256(page).hexdigest()

    # Static: inline style and SVG, nothing to run, nothing fetched, user text escaped.
    html = page.decode()
    assert "<style>" in html and "<svg" in html
    assert "<script" not in html and "&lt;script&gt;" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_a_card_that_would_mix_two_models_is_refused(recorded: Recorded, tmp_path: Path) -> None:
    report = json.loads(recorded.inputs["quantize-report"].read_text())
    report["onnx_digest"] = "0" * 64
    other = tmp_path / "quantize-report.json"
    other.write_text(json.dumps(report))
    result = card_step(recorded, tmp_path / "out", **{"quantize-report": other})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the quantize report describes ONNX sha256 {'0' * 64}, the evaluation sha256 "
        f"{recorded.onnx_digest}: the card would mix two models"
    ]
    assert not (tmp_path / "out").exists(), "nothing half-written"


def test_a_time_column_the_data_lacks_is_bad_input(recorded: Recorded, tmp_path: Path) -> None:
    card = CARD.model_copy(update={"time_column": "signed_at"})
    result = card_step(recorded, tmp_path / "out", card)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: model_card.time_column 'signed_at' is not a column of ")
    assert not (tmp_path / "out").exists()
