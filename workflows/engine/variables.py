"""Argo's `{{...}}` variables: finding them in a string and substituting them from a scope.

Substitution is one pass over the original text, so a value that itself contains `{{` is
inserted as-is and never re-expanded (Argo behaves the same way). An unknown name is an
error naming it, never left in place.
"""

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from workflows.engine.errors import ManifestError, VariableError

TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
CREATION_TIMESTAMP = "workflow.creationTimestamp"
SKIPPED_OUTPUT = "\x00skipped-output\x00"
"""The value of a skipped call's output that has no default: Argo's absent optional (nil in
an expression; an argument naming it is left out, so the input's default applies)."""


def tags(text: str) -> Iterator[str]:
    """Each variable name in `text`, stripped of the braces and surrounding spaces."""
    for match in TAG.finditer(text):
        yield match.group(1).strip()


def has_tags(text: str) -> bool:
    return "{{" in text


@dataclass(frozen=True)
class Scope:
    """Variable values visible at one place; a child scope adds to (and shadows) its parent."""

    values: Mapping[str, str] = field(default_factory=dict)
    parent: "Scope | None" = None
    created: datetime | None = None
    """Set on the global scope: answers `workflow.creationTimestamp.<strftime char>`."""
    dynamic: Mapping[str, Callable[[], str]] = field(default_factory=dict)
    """Values computed when read (`workflow.duration`)."""

    def child(self, values: Mapping[str, str]) -> "Scope":
        return Scope(values, self)

    def get(self, name: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            value = scope.values.get(name)
            if value is not None:
                return value
            if name in scope.dynamic:
                return scope.dynamic[name]()
            if scope.created is not None and name.startswith(CREATION_TIMESTAMP + "."):
                return _timestamp_part(scope.created, name.removeprefix(CREATION_TIMESTAMP + "."))
            scope = scope.parent
        return None

    def flatten(self) -> dict[str, str]:
        """Every value visible here (inner scopes shadow outer ones)."""
        chain: list[Scope] = []
        scope: Scope | None = self
        while scope is not None:
            chain.append(scope)
            scope = scope.parent
        values: dict[str, str] = {}
        for link in reversed(chain):
            values.update(link.values)
            values.update({name: compute() for name, compute in link.dynamic.items()})
        return values


def json_text(value: object) -> str:
    """How Argo (Go's encoding/json) renders a list or map into a variable: compact, keys
    sorted. Consumers parse it, so the exact spelling matters less than it being stable."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def substitute(text: str, scope: Scope, where: str) -> str:
    """Replace every `{{name}}` (and every expression tag `{{=expr}}`) in `text` from
    `scope`; unknown names raise VariableError."""
    if "{{" not in text:
        return text
    return TAG.sub(_replacer(scope, where), text)


def evaluate_value(expression: str, scope: Scope, where: str) -> str:
    """An expression (`valueFrom.expression`, `{{=...}}`) as text, the way Argo inserts a
    result: strings as they are, anything else as JSON."""
    from workflows.engine.exprlang import ExpressionError, to_text

    try:
        return to_text(evaluate_object(expression, scope, {}, where))
    except ExpressionError as error:
        raise ManifestError(f"{where}: expression {expression.strip()!r}: {error}") from None


def evaluate_object(
    expression: str, scope: Scope, objects: Mapping[str, object], where: str
) -> object:
    """An expression's value; `objects` adds non-text values by flat name (artifacts, for a
    `fromExpression`)."""
    from workflows.engine.exprlang import ExpressionError, evaluate, nested_env

    flat: dict[str, object] = {**scope.flatten(), **objects}
    try:
        return evaluate(expression, nested_env(flat, SKIPPED_OUTPUT))
    except ExpressionError as error:
        raise ManifestError(f"{where}: expression {expression.strip()!r}: {error}") from None


def _replacer(scope: Scope, where: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name.startswith("="):
            return evaluate_value(name[1:], scope, where)
        value = scope.get(name)
        if value is None:
            raise VariableError(name, where)
        return value

    return replace


def _timestamp_part(created: datetime, part: str) -> str | None:
    """Argo's `workflow.creationTimestamp.<X>`: one strftime character, or RFC3339."""
    if part == "RFC3339":
        return created.strftime("%Y-%m-%dT%H:%M:%SZ")
    if len(part) == 1 and part.isalpha():
        return created.strftime("%" + part)
    return None
