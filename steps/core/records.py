"""The base of every typed record a step reads or writes (specs, reports, manifests)."""

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Immutable, and strict about keys: a misspelt or unknown field is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
