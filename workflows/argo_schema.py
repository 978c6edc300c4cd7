"""Argo v4's JSON schema, made strict: the shape check of `mlpipe lint` and of the tests.

The published schema (workflows/schemas/, Argo v4.1.2) allows unknown fields and types some
int-or-string fields as string-only; Argo itself rejects the first (the API server prunes or
refuses them) and accepts both for the second, so the check matches Argo, not the file.
"""

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "argo-workflows-v4.1.2.schema.json"
INT_OR_STRING = {"type": ["string", "integer"]}
PREFIX = "io.argoproj.workflow.v1alpha1."


def strict_definitions(schema: Mapping[str, Any]) -> dict[str, Any]:
    definitions: dict[str, Any] = copy.deepcopy(dict(schema["definitions"]))
    for name, definition in definitions.items():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
        if name.endswith(("intstr.IntOrString", "resource.Quantity")):
            definitions[name] = INT_OR_STRING
    return definitions


@functools.cache
def _definitions() -> dict[str, Any]:
    return strict_definitions(json.loads(SCHEMA_PATH.read_text()))


@functools.cache
def validator_for(kind: str) -> jsonschema.Draft202012Validator:
    """A strict validator for one Argo type: `Workflow`, `CronWorkflow`, `ArtifactRepository`..."""
    if PREFIX + kind not in _definitions():
        raise KeyError(f"no Argo type {kind!r} in {SCHEMA_PATH.name}")
    root = {"$ref": f"#/definitions/{PREFIX}{kind}", "definitions": _definitions()}
    return jsonschema.Draft202012Validator(root)


def json_path(parts: Iterable[object]) -> str:
    """`spec.templates[3].container`: keys dotted, list indices in brackets."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_problems(manifest: Mapping[str, Any], kind: str | None = None) -> list[tuple[str, str]]:
    """(JSON path, message) for each way `manifest` breaks the strict schema of its kind."""
    validator = validator_for(kind or str(manifest["kind"]))
    found = sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))
    return [(json_path(error.absolute_path) or "(top level)", error.message) for error in found]


def schema_errors(manifest: Mapping[str, Any]) -> list[str]:
    """One `path: message` line per problem."""
    return [f"{path}: {message}" for path, message in schema_problems(manifest)]
