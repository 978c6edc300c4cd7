"""Typed settings each step receives as one JSON parameter.

The pipeline config (workflows/config.py) is made of these models, so a value is checked
once when the config is loaded, travels through the manifest as JSON, and is parsed back
by the step with the same model. `extra="forbid"` everywhere: a misspelt key is an error.
"""

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steps.errors import BadInput


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_json_arg(cls, text: str) -> Self:
        """Parse the JSON a workflow passes on the command line; a bad value is BadInput."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in issue['loc']) or '<root>'}: {issue['msg']}"
                for issue in error.errors()
            )
            raise BadInput(f"invalid {cls.__name__}: {problems}") from error


class DataSpec(Spec):
    """What the columns of the user's dataset mean."""

    label: str = "churned"
    positive_class: str | int | bool = "yes"
    categorical: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=lambda: ["", "NA", "N/A", "?"])
    slice_column: str | None = None
    row_key: str | None = None
    exclude: list[str] = Field(default_factory=list, description="columns that are not features")


class AuditSpec(Spec):
    """The audit gate: a GX-native expectation suite plus row-count bounds."""

    suite: dict[str, Any] = Field(default_factory=dict)
    min_rows: int = Field(default=100, ge=1)
    max_rows: int | None = Field(default=None, ge=1)


class TrainSpec(Spec):
    """XGBoost settings for the distributed training group."""

    workers: int = Field(default=2, ge=1, le=64)
    rounds: int = Field(default=200, ge=1)
    eta: float = Field(default=0.1, gt=0, le=1)
    max_depth: int = Field(default=6, ge=1, le=32)
    early_stopping_rounds: int | None = Field(default=20, ge=1)
    scale_pos_weight: float | None = Field(default=None, gt=0)
    seed: int = 42
    nthread: int = Field(default=1, ge=1)
    tracker_port: int = Field(default=9091, ge=1, le=65535)
    timeout_seconds: int = Field(default=300, ge=1, description="collective timeout")


class QuantizeSpec(Spec):
    """ONNX export and its parity gate against xgboost on the test split."""

    parity_tolerance: float = Field(default=1e-5, gt=0)
    target_opset: int = Field(default=15, ge=9, le=15)


class EvaluateSpec(Spec):
    """Evaluation on the test split and the promotion gate."""

    min_auc: float = Field(default=0.6, ge=0, le=1)
    threshold: float = Field(default=0.5, gt=0, lt=1)


class DeploySpec(Spec):
    """Where and how the model is deployed; locally, a model server on loopback."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0: any free port")
    smoke_rows: int = Field(default=64, ge=1)
    startup_timeout_seconds: float = Field(default=60, gt=0)
