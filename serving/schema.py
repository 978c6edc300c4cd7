"""The feature schema the model was trained on, as the server needs it.

The training step writes `feature-schema.json` next to the booster; the server reads that
JSON itself (serving/ never imports steps/) to know how many columns a row has, in which
order, and to publish their names in the model metadata so clients can build rows.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SchemaError(Exception):
    """The schema file is missing or not a feature schema; the message names the file."""


class Feature(BaseModel):
    # extra="ignore": the training side may record more per feature than serving uses.
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    kind: Literal["numeric", "categorical"]
    categories: list[str] = Field(default_factory=list)


class FeatureSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    features: list[Feature] = Field(min_length=1)

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]


def read_schema(path: Path) -> FeatureSchema:
    """Load and check `feature-schema.json`; any problem is a SchemaError naming the file."""
    try:
        return FeatureSchema.model_validate_json(path.read_bytes())
    except OSError as error:
        raise SchemaError(f"cannot read feature schema {path}: {error.strerror}") from None
    except ValidationError as error:
        raise SchemaError(f"{path} is not a feature schema: {error}") from None
