"""A strict validator for Argo manifests built from the Argo v4 JSON schema vendored in
tests/support/argo/.

The published schema allows unknown fields and types some int-or-string fields as
string-only; Argo itself rejects the first and accepts both for the second, so we match it.
"""

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent / "argo" / "argo-workflows-v4.1.2.schema.json"
INT_OR_STRING = {"type": ["string", "integer"]}
PREFIX = "io.argoproj.workflow.v1alpha1."


def strict_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    definitions = copy.deepcopy(schema["definitions"])
    for name, definition in definitions.items():
        if "properties" in definition and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
        if name.endswith(("intstr.IntOrString", "resource.Quantity")):
            definitions[name] = INT_OR_STRING
    return definitions


def validator_for(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    root = {"$ref": f"#/definitions/{PREFIX}{kind}", "definitions": strict_definitions(schema)}
    return jsonschema.Draft202012Validator(root)


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    validator = validator_for(manifest["kind"])
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]
