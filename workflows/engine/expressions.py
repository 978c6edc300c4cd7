"""The two small expression languages of a DAG task: `depends` and `when`.

`depends` ("A && (B.Failed || !C.Succeeded)") decides, once the tasks it names are done,
whether a task runs; a bare task name means `(A.Succeeded || A.Skipped || A.Daemoned)`,
exactly as Argo's enhanced depends logic. `dependencies: [A, B]` is the same as `A && B`.

`when` is evaluated after substitution like Argo's govaluate: `== != < > <= >=`, `&& || !`,
parentheses, numbers, quoted strings, `true`/`false`, and bare words compared as strings
(so `{{tasks.a.outputs.parameters.gate}} == pass` works unquoted). Arithmetic is refused.
"""

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workflows.engine.errors import ManifestError


class TaskResult(StrEnum):
    """What a `depends` operand can test, `task.<Result>`."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERRORED = "Errored"
    SKIPPED = "Skipped"
    OMITTED = "Omitted"
    DAEMONED = "Daemoned"
    COMPLETED = "Completed"
    ANY_SUCCEEDED = "AnySucceeded"
    ALL_FAILED = "AllFailed"


FAILURE_RESULTS = frozenset(
    {
        TaskResult.FAILED,
        TaskResult.ERRORED,
        TaskResult.COMPLETED,
        TaskResult.ANY_SUCCEEDED,
        TaskResult.ALL_FAILED,
    }
)
"""Results that can hold when the task failed: naming one means the failure is expected."""


@dataclass(frozen=True)
class Ref:
    task: str
    result: TaskResult | None


@dataclass(frozen=True)
class Not:
    operand: "Depends"


@dataclass(frozen=True)
class BoolOp:
    op: str  # "&&" or "||"
    left: "Depends"
    right: "Depends"


Depends = Ref | Not | BoolOp

_DEPENDS_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z0-9_-]+)(?:\.([A-Za-z]+))?)")


def parse_depends(text: str) -> Depends:
    """Parse a `depends` expression; raises ManifestError naming the problem."""
    tokens: list[str | Ref] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _DEPENDS_TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ManifestError(f"depends {text!r}: cannot parse at {text[position:]!r}")
        position = match.end()
        if match.group(1):
            tokens.append(match.group(1))
            continue
        result = match.group(3)
        if result is not None and result not in TaskResult.__members__.values():
            known = ", ".join(r.value for r in TaskResult)
            raise ManifestError(f"depends {text!r}: unknown result .{result} (known: {known})")
        tokens.append(Ref(match.group(2), TaskResult(result) if result else None))
    parser = _Parser(tokens, f"depends {text!r}")
    return parser.parse()


def dependencies_expression(names: tuple[str, ...]) -> Depends:
    """`dependencies: [A, B]` as the equivalent `A && B`."""
    expression: Depends = Ref(names[0], None)
    for name in names[1:]:
        expression = BoolOp("&&", expression, Ref(name, None))
    return expression


def referenced_tasks(expression: Depends) -> set[str]:
    if isinstance(expression, Ref):
        return {expression.task}
    if isinstance(expression, Not):
        return referenced_tasks(expression.operand)
    return referenced_tasks(expression.left) | referenced_tasks(expression.right)


def failure_aware_tasks(expression: Depends, negated: bool = False) -> set[str]:
    """Tasks whose failure this expression expects (a failure result, or under a `!`)."""
    if isinstance(expression, Ref):
        expects = negated or expression.result in FAILURE_RESULTS
        return {expression.task} if expects else set()
    if isinstance(expression, Not):
        return failure_aware_tasks(expression.operand, not negated)
    return failure_aware_tasks(expression.left, negated) | failure_aware_tasks(
        expression.right, negated
    )


def evaluate_depends(expression: Depends, results: Callable[[str], frozenset[TaskResult]]) -> bool:
    """`results(task)` is the set of results that hold for a finished task."""
    if isinstance(expression, Ref):
        holds = results(expression.task)
        if expression.result is None:
            return bool(holds & {TaskResult.SUCCEEDED, TaskResult.SKIPPED, TaskResult.DAEMONED})
        return expression.result in holds
    if isinstance(expression, Not):
        return not evaluate_depends(expression.operand, results)
    left = evaluate_depends(expression.left, results)
    if expression.op == "&&":
        return left and evaluate_depends(expression.right, results)
    return left or evaluate_depends(expression.right, results)


class _Parser:
    """Recursive descent over `||` < `&&` < `!` < parentheses, for `depends`."""

    def __init__(self, tokens: list[str | Ref], where: str) -> None:
        self.tokens = tokens
        self.index = 0
        self.where = where

    def parse(self) -> Depends:
        if not self.tokens:
            raise ManifestError(f"{self.where}: empty expression")
        expression = self._or()
        if self.index != len(self.tokens):
            raise ManifestError(f"{self.where}: unexpected {self.tokens[self.index]!r}")
        return expression

    def _peek(self) -> str | Ref | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _or(self) -> Depends:
        expression = self._and()
        while self._peek() == "||":
            self.index += 1
            expression = BoolOp("||", expression, self._and())
        return expression

    def _and(self) -> Depends:
        expression = self._unary()
        while self._peek() == "&&":
            self.index += 1
            expression = BoolOp("&&", expression, self._unary())
        return expression

    def _unary(self) -> Depends:
        token = self._peek()
        self.index += 1
        if token == "!":
            return Not(self._unary())
        if token == "(":
            expression = self._or()
            if self._peek() != ")":
                raise ManifestError(f"{self.where}: missing ')'")
            self.index += 1
            return expression
        if isinstance(token, Ref):
            return token
        raise ManifestError(f"{self.where}: expected a task name, got {token!r}")


# --- when ---------------------------------------------------------------------------------

Value = bool | float | str

_WHEN_TOKEN = re.compile(
    r"\s*(?:(&&|\|\||==|!=|=~|!~|<=|>=|<|>|!|\(|\))|'([^']*)'|\"([^\"]*)\"|([^\s()'\"=!<>&|~]+))"
)
_COMPARATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class _Literal:
    value: Value


def evaluate_when(text: str) -> bool:
    """Evaluate a substituted `when`; raises ManifestError for anything it cannot judge."""
    where = f"when {text!r}"
    tokens: list[str | _Literal] = []
    position = 0
    stripped = text.strip()
    while position < len(stripped):
        match = _WHEN_TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise ManifestError(f"{where}: cannot parse at {stripped[position:]!r}")
        position = match.end()
        operator, single, double, word = match.groups()
        if operator:
            tokens.append(operator)
        elif single is not None or double is not None:
            tokens.append(_Literal(single if single is not None else str(double)))
        else:
            tokens.append(_Literal(_word(word)))
    result = _WhenParser(tokens, where).parse()
    if not isinstance(result, bool):
        raise ManifestError(f"{where}: expected true or false, got {result!r}")
    return result


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def _word(word: str) -> Value:
    if word in ("true", "false"):
        return word == "true"
    return float(word) if _NUMBER.fullmatch(word) else word


class _WhenParser:
    def __init__(self, tokens: list[str | _Literal], where: str) -> None:
        self.tokens = tokens
        self.index = 0
        self.where = where

    def parse(self) -> Value:
        if not self.tokens:
            raise ManifestError(f"{self.where}: empty expression")
        value = self._or()
        if self.index != len(self.tokens):
            raise ManifestError(f"{self.where}: unexpected {self._describe(self._peek())}")
        return value

    def _peek(self) -> str | _Literal | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _describe(self, token: str | _Literal | None) -> str:
        if isinstance(token, _Literal):
            return repr(token.value)
        return repr(token) if token else "end of expression"

    def _bool(self, value: Value, operator: str) -> bool:
        if not isinstance(value, bool):
            raise ManifestError(f"{self.where}: {operator} needs true/false, got {value!r}")
        return value

    def _or(self) -> Value:
        value = self._and()
        while self._peek() == "||":
            self.index += 1
            right = self._and()
            value = self._bool(value, "||") or self._bool(right, "||")
        return value

    def _and(self) -> Value:
        value = self._comparison()
        while self._peek() == "&&":
            self.index += 1
            right = self._comparison()
            value = self._bool(value, "&&") and self._bool(right, "&&")
        return value

    def _comparison(self) -> Value:
        left = self._unary()
        operator = self._peek()
        if operator in ("==", "!=", "=~", "!~", "<", ">", "<=", ">="):
            self.index += 1
            right = self._unary()
            return self._compare(str(operator), left, right)
        return left

    def _compare(self, op: str, left: Value, right: Value) -> bool:
        if op in ("=~", "!~"):
            # govaluate's regex operators: the right side is a pattern searched in the left.
            if not isinstance(left, str) or not isinstance(right, str):
                raise ManifestError(f"{self.where}: {op} needs strings, got {left!r} {right!r}")
            found = re.search(right, left) is not None
            return found if op == "=~" else not found
        if op in ("==", "!="):
            same = type(left) is type(right) and left == right
            return same if op == "==" else not same
        # Numbers order numerically, strings lexically; mixing them (or booleans) is an error.
        pair = (left, right)
        if not (all(isinstance(v, float) for v in pair) or all(isinstance(v, str) for v in pair)):
            raise ManifestError(f"{self.where}: cannot order {left!r} {op} {right!r}")
        return bool(_COMPARATORS[op](left, right))

    def _unary(self) -> Value:
        token = self._peek()
        self.index += 1
        if token == "!":
            return not self._bool(self._unary(), "!")
        if token == "(":
            value = self._or()
            if self._peek() != ")":
                raise ManifestError(f"{self.where}: missing ')'")
            self.index += 1
            return value
        if isinstance(token, _Literal):
            return token.value
        raise ManifestError(f"{self.where}: unexpected {self._describe(token)}")
