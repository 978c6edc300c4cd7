"""`model-card.json`: what a reviewer needs before approving a model, as one typed record.

The fields follow Google's Model Card Toolkit (schema v0.0.2: `model_details`,
`model_parameters`, `quantitative_analysis`, `considerations`, each with the Toolkit's
names) wherever one applies. What the Toolkit has no field for (the audit's outcome, the
calibration bins, the champion comparison, robustness and behavioural checks, the
quantized encoding, the provenance chain) is added inside the section it belongs to, as
the Toolkit's schema allows below the top level; the top level has exactly its sections.
The HTML page (steps/model_card/report.py) renders this record, so the two never disagree.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from steps.core.attestation import Resource
from steps.core.names import Encoding
from steps.core.records import Record
from steps.core.specs import DataSpec, ModelCardSpec, Owner, Risk
from steps.data.features import FeatureSchema
from steps.evaluate.behaviour import CheckResult
from steps.evaluate.evaluation import Evaluation
from steps.evaluate.gate import Comparison, Gate
from steps.evaluate.metrics import Intervals, Metrics, ReliabilityBin
from steps.evaluate.robustness import Perturbed
from steps.provenance.chain import Link
from steps.provenance.step import ProvenanceRecord
from steps.quantize.measure import Measurement
from steps.quantize.report import QuantizeReport

SCHEMA_VERSION = "0.0.2"
"""The Model Card Toolkit schema whose names the card uses."""

METRICS = ("auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "ece")
"""The overall metrics the card reports, each with its confidence interval."""


class Version(Record):
    name: str
    """The ONNX file's digest: the version is what is served."""
    date: str
    diff: str
    """How it compares with the model serving now."""


class License(Record):
    identifier: str


class Reference(Record):
    reference: str


class Subject(Record):
    name: str
    sha256: str
    uri: str | None = None


class Statement(Record):
    """One link of the provenance chain: a step's signed statement and what it produced."""

    step: str
    statement: str
    workflow: str | None = None
    signed: bool
    subjects: list[Subject]


class Provenance(Record):
    data_digest: str
    dataset_digest: str
    model_digest: str
    onnx_digest: str
    config_digest: str | None = None
    code_version: str | None = None
    chain: list[Statement]
    """The statements behind the ONNX file, producers first (steps/provenance/chain.py)."""


class ModelDetails(Record):
    name: str
    overview: str
    documentation: str
    owners: list[Owner]
    version: Version
    licenses: list[License]
    references: list[Reference]
    path: str
    """Where the model and this card are published: its registry folder."""
    provenance: Provenance


class SensitiveData(Record):
    sensitive_data: list[str]


class TimeRange(Record):
    column: str
    start: str
    end: str


class Audit(Record):
    passed: bool
    critical_failures: int
    warnings: int
    notes: list[str]


class Dataset(Record):
    name: str
    description: str
    link: str
    sensitive: SensitiveData
    rows: int
    digest: str
    time_range: TimeRange | None = None
    audit: Audit | None = None


class KeyVal(Record):
    key: str
    value: str


class Quantization(Record):
    """The encoding served, and what it costs against the XGBoost model it came from."""

    encoding: Encoding
    reason: str
    opset: int
    bytes: int
    baseline_bytes: int
    max_abs_diff: float
    auc_delta: float
    parity_max_abs_diff: float
    parity_tolerance: float


class ModelParameters(Record):
    model_architecture: str
    data: list[Dataset]
    input_format: str
    input_format_map: list[KeyVal]
    output_format: str
    output_format_map: list[KeyVal]
    quantization: Quantization


class ConfidenceInterval(Record):
    lower_bound: float
    upper_bound: float


class PerformanceMetric(Record):
    type: str
    value: float
    slice: str | None = None
    """None: the whole test split."""
    confidence_interval: ConfidenceInterval | None = None


class Calibration(Record):
    ece: float
    """Of the served (calibrated) probabilities on the test split, as evaluate measured it."""
    reliability: list[ReliabilityBin]
    method: str
    """How quantize calibrated the booster's margins (steps/quantize/calibration.py)."""
    reason: str
    fitted_rows: int
    """Validation rows the calibration was fitted on."""
    ece_uncalibrated: float
    """The booster's own probabilities on the test split: what calibration changed."""


class QuantitativeAnalysis(Record):
    performance_metrics: list[PerformanceMetric]
    confidence: float
    test_rows: int
    calibration: Calibration
    champion: Comparison | None = None
    robustness: list[Perturbed]
    behaviour: list[CheckResult]
    gate: Gate


class Description(Record):
    description: str


class Considerations(Record):
    users: list[Description]
    use_cases: list[Description]
    limitations: list[Description]
    tradeoffs: list[Description]
    ethical_considerations: list[Risk]


class ModelCard(Record):
    schema_version: str = SCHEMA_VERSION
    model_details: ModelDetails
    model_parameters: ModelParameters
    quantitative_analysis: QuantitativeAnalysis
    considerations: Considerations


def build_card(
    *,
    model_name: str,
    spec: ModelCardSpec,
    data: DataSpec,
    evaluation: Evaluation,
    quantization: QuantizeReport,
    provenance: ProvenanceRecord,
    audit: Mapping[str, Any],
    schema: FeatureSchema,
    chain: Sequence[Statement],
    run: Mapping[str, str | None],
    registry_uri: str,
    time_range: TimeRange | None,
    today: date,
) -> ModelCard:
    """The card of the evaluated model, from what the pipeline recorded about it; `run`
    holds the run's config digest and code version (None outside a workflow)."""
    return ModelCard(
        model_details=ModelDetails(
            name=model_name,
            overview=spec.overview,
            documentation=spec.documentation,
            owners=spec.owners,
            version=Version(
                name=f"sha256:{evaluation.onnx_digest}",
                date=today.isoformat(),
                diff=_versus_champion(evaluation.champion),
            ),
            licenses=[License(identifier=name) for name in spec.licenses],
            references=[
                Reference(reference=uri) for uri in [*spec.references, evaluation.report_uri]
            ],
            path=registry_uri,
            provenance=Provenance(
                data_digest=provenance.data_digest,
                dataset_digest=provenance.dataset_digest,
                model_digest=evaluation.model_digest,
                onnx_digest=evaluation.onnx_digest,
                config_digest=run.get("config_digest"),
                code_version=run.get("code_version"),
                chain=list(chain),
            ),
        ),
        model_parameters=_parameters(
            spec, data, quantization, provenance, audit, schema, time_range
        ),
        quantitative_analysis=QuantitativeAnalysis(
            performance_metrics=performance_metrics(evaluation),
            confidence=evaluation.intervals.confidence,
            test_rows=evaluation.metrics.rows,
            calibration=Calibration(
                ece=evaluation.metrics.ece,
                reliability=evaluation.reliability,
                method=quantization.calibration.method,
                reason=quantization.calibration.reason,
                fitted_rows=quantization.calibration.rows,
                ece_uncalibrated=quantization.test_ece_before,
            ),
            champion=evaluation.champion,
            robustness=evaluation.robustness,
            behaviour=evaluation.behaviour,
            gate=evaluation.gate,
        ),
        considerations=Considerations(
            users=_described(spec.users),
            use_cases=_described(spec.use_cases),
            limitations=_described([*spec.limitations, *measured_limitations(evaluation)]),
            tradeoffs=_described([*spec.tradeoffs, _quantization_tradeoff(quantization)]),
            ethical_considerations=spec.ethical_considerations,
        ),
    )


def performance_metrics(evaluation: Evaluation) -> list[PerformanceMetric]:
    """Every overall metric with its interval, then each slice's AUC with its interval."""
    found = [_metric(name, evaluation.metrics, evaluation.intervals) for name in METRICS]
    for result in evaluation.slices:
        if result.metrics is not None:
            found.append(_metric("auc", result.metrics, result.intervals, result.name))
    return found


def measured_limitations(evaluation: Evaluation) -> list[str]:
    """What the evaluation found the model weak on, or could not judge."""
    found = [f"gate warning: {warning}" for warning in evaluation.gate.warnings]
    unjudged = [s.name for s in evaluation.slices if not s.judged]
    if unjudged:
        found.append(
            f"too few test rows to judge {len(unjudged)} slice(s): {', '.join(unjudged[:10])}"
            + (" ..." if len(unjudged) > 10 else "")
        )
    if evaluation.worst_slice is not None and evaluation.worst_slice_auc is not None:
        found.append(
            f"weakest judged slice: {evaluation.worst_slice} "
            f"(AUC {evaluation.worst_slice_auc:.4f} vs {evaluation.metrics.auc:.4f} overall)"
        )
    found += [
        f"behavioural check failed: {c.message}" for c in evaluation.behaviour if not c.passed
    ]
    return found


def _metric(
    name: str, metrics: Metrics, intervals: Intervals | None, slice_name: str | None = None
) -> PerformanceMetric:
    interval = getattr(intervals, name) if intervals is not None else None
    return PerformanceMetric(
        type=name,
        value=float(getattr(metrics, name)),
        slice=slice_name,
        confidence_interval=None
        if interval is None
        else ConfidenceInterval(lower_bound=interval.low, upper_bound=interval.high),
    )


def _parameters(
    spec: ModelCardSpec,
    data: DataSpec,
    quantization: QuantizeReport,
    provenance: ProvenanceRecord,
    audit: Mapping[str, Any],
    schema: FeatureSchema,
    time_range: TimeRange | None,
) -> ModelParameters:
    sensitive = SensitiveData(sensitive_data=spec.sensitive_data)
    rows = provenance.rows
    splits = [("training", rows.train), ("validation", rows.valid), ("test", rows.test)]
    source = Dataset(
        name="source data",
        description=f"the data given to the pipeline, as {provenance.canonical_format}",
        link=provenance.source_uri,
        sensitive=sensitive,
        rows=rows.total,
        digest=provenance.data_digest,
        time_range=time_range,
        audit=Audit(
            passed=bool(audit["passed"]),
            critical_failures=int(audit["critical_failures"]),
            warnings=int(audit["warnings"]),
            notes=[str(note) for note in audit.get("notes", [])],
        ),
    )
    canonical = [
        Dataset(
            name=f"{split} split",
            description=f"{provenance.split_scheme}, {provenance.shards} shard(s)",
            link=provenance.dataset_uri,
            sensitive=sensitive,
            rows=count,
            digest=provenance.dataset_digest,
        )
        for split, count in splits
    ]
    chosen = _measured(quantization, quantization.encoding)
    baseline = _measured(quantization, quantization.reference)
    features = [
        KeyVal(
            key=feature.name,
            value=f"categorical: {', '.join(feature.categories)}"
            if feature.categories
            else "numeric",
        )
        for feature in schema.features
    ]
    return ModelParameters(
        model_architecture=(
            f"XGBoost {quantization.versions.get('xgboost', '')} gradient-boosted trees, binary "
            f"classifier; served as ONNX ({quantization.encoding}, "
            f"opset {quantization.target_opset})"
        ),
        data=[source, *canonical],
        input_format=(
            f"ONNX input {quantization.input!r}: float32 [rows, {len(features)}], one column per "
            "feature in this order; a categorical value enters as its index among its categories"
        ),
        input_format_map=features,
        output_format=(
            f"ONNX output {quantization.output!r}: the probability that {data.label!r} is "
            f"{data.positive_class!r}"
        ),
        output_format_map=[KeyVal(key=quantization.output, value="float32 [rows]")],
        quantization=Quantization(
            encoding=quantization.encoding,
            reason=quantization.reason,
            opset=quantization.target_opset,
            bytes=chosen.bytes,
            baseline_bytes=baseline.bytes,
            max_abs_diff=chosen.max_abs_diff,
            auc_delta=chosen.auc_delta,
            parity_max_abs_diff=quantization.parity.max_abs_diff,
            parity_tolerance=quantization.parity.tolerance,
        ),
    )


def _versus_champion(champion: Comparison | None) -> str:
    if champion is None:
        return "first version: no model served before it"
    overall = champion.overall
    return (
        f"against the serving model sha256:{champion.champion_digest} on the same test rows: "
        f"AUC {overall.challenger:.4f} vs {overall.champion:.4f} "
        f"({overall.challenger - overall.champion:+.4f})"
    )


def _quantization_tradeoff(quantization: QuantizeReport) -> str:
    chosen = _measured(quantization, quantization.encoding)
    return (
        f"served as {quantization.encoding}: probabilities within "
        f"{chosen.max_abs_diff:.2g} of XGBoost's, AUC change "
        f"{chosen.auc_delta:+.2g} ({quantization.reason})"
    )


def _measured(quantization: QuantizeReport, encoding: Encoding) -> Measurement:
    return next(
        c.measurement for c in quantization.candidates if c.measurement.encoding is encoding
    )


def _described(texts: Sequence[str]) -> list[Description]:
    return [Description(description=text) for text in texts]


def chain_statements(links: Sequence[Link], uri: Callable[[str], str]) -> list[Statement]:
    """The chain's links as the card records them; `uri` turns a statement key into a URI."""
    return [
        Statement(
            step=link.step,
            statement=uri(link.key),
            workflow=link.workflow,
            signed=link.signed,
            subjects=[_subject(resource) for resource in link.subjects],
        )
        for link in links
    ]


def _subject(resource: Resource) -> Subject:
    return Subject(name=resource.name, sha256=resource.digest, uri=resource.uri)
