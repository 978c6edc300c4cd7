"""Template-level Prometheus metrics (`metrics.prometheus`): what a cluster's dashboards see.

The Argo controller evaluates a template's metrics when its node ends (a realtime gauge also
while it runs) and serves them on its own metrics endpoint, so a run's key numbers reach a
dashboard with no extra step. Each gauge reads an output parameter the template declares:
`OUTPUT_GAUGES` is keyed by parameter name and a template gets a gauge exactly for the
outputs it has, so no metric ever refers to a parameter that does not exist. Labels stay
low-cardinality (step and model, never the run name).

The local engine accepts `metrics` without acting on it (workflows/engine/fields.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from hera.workflows.metrics import Gauge, Label

from steps.core.names import Param
from workflows.parameters import WorkflowParam


@dataclass(frozen=True)
class OutputGauge:
    name: str
    help: str
    on_failure: bool = False
    """Also emitted when the step failed: a gate's numbers matter most then."""


OUTPUT_GAUGES: Final[dict[str, OutputGauge]] = {
    Param.VALID_AUC: OutputGauge(
        "mlpipe_validation_auc",
        "AUC of the trained model on the validation split, as agreed by every worker",
    ),
    Param.AUC: OutputGauge("mlpipe_test_auc", "AUC of the deployable ONNX model on the test split"),
    Param.WORST_SLICE_AUC: OutputGauge(
        "mlpipe_worst_slice_auc", "Lowest AUC over the judged slices, on the test split"
    ),
    Param.ECE: OutputGauge("mlpipe_ece", "Expected calibration error on the test split"),
    # The drift check (issue 7) publishes this parameter name; its gauge appears as soon
    # as a template declares the output.
    "drift_score": OutputGauge(
        "mlpipe_drift_score", "Largest per-feature drift score of the recent data window"
    ),
    Param.CRITICAL_FAILURES: OutputGauge(
        "mlpipe_audit_critical_failures",
        "Critical expectations the input data failed in the audit gate",
        on_failure=True,
    ),
}

STEP_DURATION: Final = OutputGauge(
    "mlpipe_step_duration_seconds", "Wall time of a pipeline step in seconds, updated while it runs"
)
MODEL_LABEL = f"{{{{workflow.parameters.{WorkflowParam.MODEL_NAME.value}}}}}"


def template_metrics(template: str, outputs: Sequence[str]) -> list[Gauge]:
    """The step-duration gauge plus one gauge per output parameter listed in OUTPUT_GAUGES.

    The model label reads the workflow's model-name parameter, which every mlpipe workflow
    has (tests/test_hardening.py checks each reference resolves).
    """
    labels = [Label(key="step", value=template), Label(key="model", value=MODEL_LABEL)]
    gauges = [
        Gauge(
            name=STEP_DURATION.name,
            help=STEP_DURATION.help,
            labels=labels,
            realtime=True,
            value="{{duration}}",
        )
    ]
    for output in outputs:
        spec = OUTPUT_GAUGES.get(output)
        if spec is None:
            continue
        gauges.append(
            Gauge(
                name=spec.name,
                help=spec.help,
                labels=labels,
                realtime=False,
                value=f"{{{{outputs.parameters.{output}}}}}",
                when=None if spec.on_failure else "{{status}} == Succeeded",
            )
        )
    return gauges
