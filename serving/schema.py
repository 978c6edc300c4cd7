"""The feature schema the model was trained on, as the server needs it.

The training step writes `feature-schema.json` next to the booster; the server reads that
JSON itself (serving/ never imports steps/) to know how many columns a row has, in which
order, how a raw category becomes the number the model was trained on, and to publish
all of that in the model metadata so clients can build requests.
"""

from functools import cached_property
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SchemaError(Exception):
    """The schema is missing or not a feature schema; the message names where it came from."""


class Feature(BaseModel):
    # extra="ignore": the training side may record more per feature than serving uses.
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical"]
    categories: list[str] = Field(default_factory=list)
    nullable: bool = True
    """Whether a row may leave this feature missing (null, NaN, or a category the model
    never saw): trees route a missing value down each split's default branch, so only a
    data contract that forbids it makes it an error. Schemas written without it allow it."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"feature {self.name!r} lists a category twice")
        return self

    @cached_property
    def codes(self) -> dict[str, int]:
        """Category -> the code the model was trained on (its index in `categories`)."""
        return {category: index for index, category in enumerate(self.categories)}


class FeatureSchema(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    features: list[Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"feature names repeat: {self.names}")
        return self

    @property
    def names(self) -> list[str]:
        return [feature.name for feature in self.features]


def parse_schema(data: bytes, where: str) -> FeatureSchema:
    """Check `feature-schema.json` bytes; any problem is a SchemaError naming `where`."""
    try:
        return FeatureSchema.model_validate_json(data)
    except ValidationError as error:
        reason = " ".join(str(error).split())
        raise SchemaError(f"{where} is not a feature schema: {reason}") from None
