"""`evaluation.json`: what the evaluate step measured and decided, as typed records.

The report (steps/evaluate/report.py) renders exactly this record, so the HTML and the JSON
never disagree; drift reads only its top-level `metrics`, deploy its `onnx_digest` and
`expected_scores`.
"""

from steps.core.records import Record
from steps.evaluate.behaviour import CheckResult
from steps.evaluate.expectation import ScoreExpectation
from steps.evaluate.gate import Comparison, Gate
from steps.evaluate.metrics import Intervals, Metrics, ReliabilityBin
from steps.evaluate.robustness import Perturbed


class SliceResult(Record):
    group: str
    name: str
    rows: int
    positives: int
    judged: bool
    """At least `min_slice_rows` rows of both classes: counts for the worst slice and gate."""
    metrics: Metrics | None
    """None when the slice holds one class only: AUC is undefined there."""
    intervals: Intervals | None


class Evaluation(Record):
    onnx_digest: str
    model_digest: str
    dataset_uri: str
    metrics: Metrics
    intervals: Intervals
    reliability: list[ReliabilityBin]
    slices: list[SliceResult]
    """Worst AUC first; unjudged slices last."""
    worst_slice: str | None
    worst_slice_auc: float | None
    worst_slice_reliability: list[ReliabilityBin]
    robustness: list[Perturbed]
    behaviour: list[CheckResult]
    champion: Comparison | None
    expected_scores: ScoreExpectation
    """What the canary should see of both models (steps/evaluate/expectation.py)."""
    gate: Gate
    report_uri: str
    """Where the HTML report is stored (named in the gate's failure message)."""
