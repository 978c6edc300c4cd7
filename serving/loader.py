"""Loading one model version: fetch the ONNX file and its feature schema, verify the digest,
build and probe the session. Used at startup and by the repository's `load` endpoint.

The digest is taken from the very bytes the session is built from, so a file swapped
between the check and the load cannot slip through; a mismatch names both digests. A load
through the endpoint must name the digest it expects: the server loads no file it cannot
verify.
"""

from collections.abc import Callable, Mapping

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.model import LoadedModel, ModelError, build_model
from serving.schema import SchemaError, parse_schema
from serving.source import DigestMismatch, S3Settings, SourceError, fetch, sibling

SCHEMA_FILE = "feature-schema.json"
"""The schema's file name in a model bundle and beside a registry version's model.onnx."""

LOAD_ERRORS = (SourceError, SchemaError, ModelError, DigestMismatch)
"""What a load can fail with; each message says what and where."""


class ModelSource(BaseModel):
    """Where a model version comes from and what it must be. Also the `parameters` of a
    repository `load` request, hence the strict, named fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: str = Field(min_length=1, description="ONNX file: a path or s3://bucket/key")
    schema_location: str | None = Field(
        default=None, alias="schema", description=f"default: {SCHEMA_FILE} beside the model"
    )
    digest: str | None = Field(default=None, description="refuse the model unless its sha256")
    version: str | None = Field(default=None, description="default: the model's sha256")

    @property
    def schema_or_sibling(self) -> str:
        return self.schema_location or sibling(self.model, SCHEMA_FILE)


def load_model(name: str, source: ModelSource, s3: S3Settings) -> LoadedModel:
    """Blocking (downloads, session build): run it off the event loop once serving."""
    fetched = fetch(source.model, s3)
    if source.digest is not None and fetched.digest != source.digest.lower():
        raise DigestMismatch(
            f"model {source.model} has sha256 {fetched.digest}, expected {source.digest}: "
            "refusing to serve it"
        )
    schema_location = source.schema_or_sibling
    schema = parse_schema(fetch(schema_location, s3).data, schema_location)
    version = source.version or fetched.digest
    return build_model(name, version, fetched.data, fetched.digest, schema, source.model)


class LoadRequestError(Exception):
    """A `load` request whose parameters are not a model source; answered with 400."""


def requested_source(
    current: ModelSource | None, body: bytes, registry_version: Callable[[str], str] | None
) -> ModelSource | None:
    """The source a `load` request asks for: its `parameters` name a new `model` (with its
    own schema, digest and version, never the old ones); or, on a server with a registry,
    only a `digest`: that registered version of the model; or change fields of the current
    source; or, empty, reload the current source. None: nothing to load. Whatever the
    form, the source must carry the digest the file is checked against.

    `registry_version` maps a digest to its model file in the registry, if there is one.
    `parameters.config` may carry the same fields as a JSON string: that is what
    `tritonclient`'s `load_model(name, config=...)` sends.
    """
    parameters = _parameters(body)
    if "model" not in parameters and "digest" in parameters and registry_version is not None:
        parameters["model"] = registry_version(str(parameters["digest"]))
    if "model" in parameters:
        source = _validated(parameters)
    elif current is None:
        return None
    else:
        source = _validated({**current.model_dump(by_alias=True, exclude_none=True), **parameters})
    if source.digest is None:
        raise LoadRequestError(
            "load parameters: digest: required (the model file's sha256): "
            "the server loads no file it cannot verify"
        )
    return source


def unload_digest(body: bytes) -> str | None:
    """The sha256 an unload request says the served version has, if it says one.
    (`unload_dependents`, which tritonclient sends, means nothing here: no model depends
    on another.)"""
    parameters = _parameters(body)
    parameters.pop("unload_dependents", None)
    digest = parameters.pop("digest", None)
    if parameters:
        raise LoadRequestError(f"unload parameters: unknown {sorted(parameters)}; only 'digest'")
    if digest is not None and not isinstance(digest, str):
        raise LoadRequestError("unload parameters: digest: must be a sha256 string")
    return digest


def _parameters(body: bytes) -> dict[str, object]:
    if not body.strip():
        return {}
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise LoadRequestError(f"malformed JSON: {error}") from None
    parameters = payload.get("parameters", {}) if isinstance(payload, dict) else None
    if not isinstance(parameters, dict):
        raise LoadRequestError("a load request is a JSON object with an object 'parameters'")
    config = parameters.pop("config", None)
    if config is not None:
        try:
            from_config = orjson.loads(config) if isinstance(config, str) else None
        except orjson.JSONDecodeError as error:
            raise LoadRequestError(f"parameters.config is not JSON: {error}") from None
        if not isinstance(from_config, dict):
            raise LoadRequestError("parameters.config must be a JSON object, as a string")
        parameters.update(from_config)
    return parameters


def _validated(parameters: Mapping[str, object]) -> ModelSource:
    try:
        return ModelSource.model_validate(parameters)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in error.errors()
        )
        raise LoadRequestError(f"load parameters: {problems}") from None
