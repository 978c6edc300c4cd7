"""Argo's expressions (`{{=...}}`, `valueFrom.expression`, `fromExpression`): a subset of
expr-lang (github.com/expr-lang/expr) with the functions Argo adds (util/expr/env: `asInt`,
`asFloat`, `jsonpath`, `toJson`, `sprig.*`).

Written here rather than taken from a library: no maintained Python implementation of
expr-lang exists, and the one binding to its Go core on PyPI accepts no host functions
(Argo's `jsonpath` and sprig). Supported: literals (numbers, strings, true/false/nil, arrays,
maps), member access (`a.b`, `a['b-c']`, `a[0]`, `a?.b`), `? :`, `??`, `||`/`or`,
`&&`/`and`, `!`/`not`, comparisons, `in`, `matches`, `contains`, `startsWith`, `endsWith`,
arithmetic (`/` is always a float division, as in expr), closures over `#` (`filter`,
`map`, `all`, `any`, `none`, `count`), and the functions in `FUNCTIONS`/`SPRIG`. Anything
else is an ExpressionError naming it, never a silent wrong value.

Values are Python's: str, int, float, bool, None, list, dict. Variables come from a run's
flat names (`inputs.parameters.x`) expanded into nested maps as Argo does (`nested_env`).
"""

import base64
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated."""


# --- values --------------------------------------------------------------------------------


def nested_env(flat: Mapping[str, Any], absent: str = "") -> dict[str, Any]:
    """bellows.Expand: `{"a.b": "1", "a.c": "2"}` -> `{"a": {"b": "1", "c": "2"}}`; a name
    with a longer one below it gives way to it (Argo's removeConflicts). `absent` values
    (a skipped call's output) become nil."""
    names = sorted(flat)
    env: dict[str, Any] = {}
    for index, name in enumerate(names):
        if index + 1 < len(names) and names[index + 1].startswith(name + "."):
            continue
        node = env
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        value = flat[name]
        node[leaf] = None if absent and isinstance(value, str) and value == absent else value
    return env


def to_json(value: Any) -> str:
    """Go's json.Marshal: compact, map keys sorted, integral floats without `.0`."""
    return json.dumps(_go_numbers(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _go_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, list):
        return [_go_numbers(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _go_numbers(item) for key, item in value.items()}
    return value


def to_text(value: Any) -> str:
    """How Argo inserts a result into a string: a string as is, anything else as JSON."""
    if value is None:
        raise ExpressionError("evaluated to nil")
    if isinstance(value, str):
        return value
    return to_json(value)


# --- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>\d+\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>\?\?|\?\.|\.\.|==|!=|<=|>=|&&|\|\||\*\*|[-+*/%<>!?:.,()\[\]{}#@])
    )""",
    re.VERBOSE,
)
_WORD_OPERATORS = {"and": "&&", "or": "||", "not": "!"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"cannot parse at {text[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup
        value = match.group(kind or "op")
        if kind == "number":
            number = float(value) if ("." in value or "e" in value.lower()) else int(value)
            tokens.append(("value", number))
        elif kind == "string":
            tokens.append(("value", _unquote(value)))
        elif kind == "name" and value in _WORD_OPERATORS:
            tokens.append(("op", _WORD_OPERATORS[value]))
        elif kind == "name" and value in ("true", "false"):
            tokens.append(("value", value == "true"))
        elif kind == "name" and value == "nil":
            tokens.append(("value", None))
        elif kind == "name" and value in ("in", "matches", "contains", "startsWith", "endsWith"):
            tokens.append(("op", value))
        else:
            tokens.append((str(kind), value))
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    if text[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    try:
        return str(json.loads(f'"{body}"'))
    except ValueError:
        raise ExpressionError(f"bad string literal {text}") from None


# --- parsing -------------------------------------------------------------------------------

Node = tuple[Any, ...]
_BINARY = {
    "??": 1,
    "||": 2,
    "&&": 3,
    "==": 4,
    "!=": 4,
    "<": 4,
    ">": 4,
    "<=": 4,
    ">=": 4,
    "in": 4,
    "matches": 4,
    "contains": 4,
    "startsWith": 4,
    "endsWith": 4,
    "..": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%": 7,
    "**": 8,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, op: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end of expression")
        if op is not None and token != ("op", op):
            raise ExpressionError(f"expected {op!r}, got {token[1]!r}")
        self.index += 1
        return token

    def at(self, op: str) -> bool:
        return self.peek() == ("op", op)

    def parse(self) -> Node:
        node = self.expression()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def expression(self) -> Node:
        condition = self.binary(0)
        if self.at("?"):
            self.take("?")
            then = self.expression()
            self.take(":")
            return ("?:", condition, then, self.expression())
        return condition

    def binary(self, minimum: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek()
            if token is None or token[0] != "op":
                return left
            op = token[1]
            if op == "!" and self.index + 1 < len(self.tokens):
                following = self.tokens[self.index + 1]
                if following == ("op", "in") and _BINARY["in"] > minimum:
                    self.index += 2
                    left = ("!", ("in", left, self.binary(_BINARY["in"])))
                    continue
            precedence = _BINARY.get(op)
            if precedence is None or precedence <= minimum:
                return left
            self.take()
            right_min = precedence - 1 if op == "**" else precedence
            left = (op, left, self.binary(right_min))

    def unary(self) -> Node:
        if self.at("!"):
            self.take()
            return ("!", self.unary())
        if self.at("-"):
            self.take()
            return ("neg", self.unary())
        if self.at("+"):
            self.take()
            return self.unary()
        return self.postfix(self.primary())

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "value":
            return ("value", value)
        if kind == "name":
            if self.at("("):
                return ("call", value, self.arguments())
            return ("name", value)
        if value in ("#", "@"):
            return ("current",)
        if value == "(":
            node = self.expression()
            self.take(")")
            return node
        if value == "[":
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.expression())
                if not self.at("]"):
                    self.take(",")
            self.take("]")
            return ("array", items)
        if value == "{":
            return self.map_or_closure()
        raise ExpressionError(f"unexpected {value!r}")

    def map_or_closure(self) -> Node:
        start = self.index
        token = self.peek()
        is_map = (
            token is not None
            and token[0] in ("name", "value")
            and self.index + 1 < len(self.tokens)
            and self.tokens[self.index + 1] == ("op", ":")
        )
        if is_map:
            pairs: list[tuple[Node, Node]] = []
            while not self.at("}"):
                key_kind, key = self.take()
                if key_kind not in ("name", "value"):
                    raise ExpressionError(f"bad map key {key!r}")
                self.take(":")
                pairs.append((("value", key), self.expression()))
                if not self.at("}"):
                    self.take(",")
            self.take("}")
            return ("map", pairs)
        if self.at("}"):
            self.take("}")
            return ("map", [])
        self.index = start
        body = self.expression()
        self.take("}")
        return ("closure", body)

    def arguments(self) -> list[Node]:
        self.take("(")
        arguments: list[Node] = []
        while not self.at(")"):
            arguments.append(self.expression())
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return arguments

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at(".") or self.at("?."):
                optional = self.take()[1] == "?."
                kind, name = self.take()
                if kind != "name":
                    raise ExpressionError(f"expected a field name after '.', got {name!r}")
                if self.at("("):
                    node = ("method", node, name, self.arguments())
                else:
                    node = ("member", node, ("value", name), optional)
            elif self.at("["):
                self.take("[")
                index = self.expression()
                self.take("]")
                node = ("member", node, index, False)
            else:
                return node


# --- evaluation ----------------------------------------------------------------------------


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """The value of expression `text` with `env`'s variables and Argo's functions."""
    tree = _Parser(text).parse()
    return _Evaluator(env).eval(tree, None)


class _Missing:
    """A name or field that does not exist: an error unless `??` or `?.` guards it."""


MISSING = _Missing()


class _Evaluator:
    def __init__(self, env: Mapping[str, Any]) -> None:
        self.env = env

    def eval(self, node: Node, current: Any) -> Any:
        value = self._eval(node, current)
        if value is MISSING:
            raise ExpressionError(f"unknown name {_describe(node)}")
        return value

    def _eval(self, node: Node, current: Any) -> Any:
        kind = node[0]
        if kind == "value":
            return node[1]
        if kind == "current":
            return current
        if kind == "name":
            name = node[1]
            if name in self.env:
                return self.env[name]
            if name == "sprig":
                return SPRIG
            return MISSING
        if kind == "member":
            return self._member(node, current)
        if kind == "array":
            return [self.eval(item, current) for item in node[1]]
        if kind == "map":
            return {str(self.eval(k, current)): self.eval(v, current) for k, v in node[1]}
        if kind == "closure":
            return ("closure", node[1])
        if kind == "call":
            return self._call(node[1], node[2], current)
        if kind == "method":
            target = self._eval(node[1], current)
            if target is SPRIG:
                function = SPRIG.get(node[2])
                if function is None:
                    raise ExpressionError(f"sprig.{node[2]} is not supported locally")
                return function(*[self.eval(a, current) for a in node[3]])
            raise ExpressionError(f"method calls ({node[2]}) are not supported locally")
        if kind == "?:":
            return self.eval(node[2] if _truth(self.eval(node[1], current)) else node[3], current)
        if kind == "!":
            return not _truth(self.eval(node[1], current))
        if kind == "neg":
            return -_number(self.eval(node[1], current))
        if kind == "??":
            left = self._eval(node[1], current)
            return self.eval(node[2], current) if left is None or left is MISSING else left
        if kind in ("&&", "||"):
            left = _truth(self.eval(node[1], current))
            if kind == "&&":
                return left and _truth(self.eval(node[2], current))
            return left or _truth(self.eval(node[2], current))
        return _binary(kind, self.eval(node[1], current), self.eval(node[2], current))

    def _member(self, node: Node, current: Any) -> Any:
        target = self._eval(node[1], current)
        optional = node[3]
        if target is MISSING or target is None:
            if optional or target is None:
                return None if optional else MISSING
            return MISSING
        key = self.eval(node[2], current)
        if isinstance(target, dict):
            return target.get(str(key), MISSING)
        if isinstance(target, list | str) and isinstance(key, int):
            try:
                return target[key]
            except IndexError:
                raise ExpressionError(f"index {key} out of range") from None
        raise ExpressionError(f"cannot read {key!r} of {type(target).__name__}")

    def _call(self, name: str, arguments: list[Node], current: Any) -> Any:
        if name in CLOSURE_FUNCTIONS:
            if len(arguments) != 2:
                raise ExpressionError(f"{name} takes a list and a closure")
            items = self.eval(arguments[0], current)
            closure = self.eval(arguments[1], current)
            if not isinstance(items, list) or not (
                isinstance(closure, tuple) and closure[0] == "closure"
            ):
                raise ExpressionError(f"{name} takes a list and a closure {{...}}")
            results = [self.eval(closure[1], item) for item in items]
            return CLOSURE_FUNCTIONS[name](items, results)
        function = FUNCTIONS.get(name)
        if function is None:
            raise ExpressionError(f"function {name}() is not supported locally")
        return function(*[self.eval(a, current) for a in arguments])


def _describe(node: Node) -> str:
    if node[0] == "name":
        return str(node[1])
    if node[0] == "member" and node[2][0] == "value":
        return f"{_describe(node[1])}.{node[2][1]}"
    return "in expression"


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"expected a bool, got {value!r}")
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(f"expected a number, got {value!r}")
    return value


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def _binary(op: str, left: Any, right: Any) -> Any:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in _COMPARE:
        if isinstance(left, str) and isinstance(right, str):
            return _COMPARE[op](left, right)
        return _COMPARE[op](_number(left), _number(right))
    if op == "in":
        if isinstance(right, dict):
            return left in right
        if isinstance(right, list):
            return any(_equal(left, item) for item in right)
        raise ExpressionError(f"'in' needs a list or map, got {right!r}")
    if op in ("matches", "contains", "startsWith", "endsWith"):
        if not isinstance(left, str) or not isinstance(right, str):
            raise ExpressionError(f"{op} needs strings")
        if op == "matches":
            return re.search(right, left) is not None
        if op == "contains":
            return right in left
        return left.startswith(right) if op == "startsWith" else left.endswith(right)
    if op == "..":
        return list(range(_int(left), _int(right) + 1))
    if op == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if op == "+" and isinstance(left, list) and isinstance(right, list):
        return left + right
    a, b = _number(left), _number(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            return math.copysign(math.inf, a) if a else math.nan
        return a / b
    if op == "%":
        return _int(a) % _int(b)
    if op == "**":
        return float(a) ** float(b)
    raise ExpressionError(f"operator {op} is not supported locally")


def _equal(left: Any, right: Any) -> bool:
    numbers = (int, float)
    both_numbers = isinstance(left, numbers) and isinstance(right, numbers)
    if both_numbers and not isinstance(left, bool) and not isinstance(right, bool):
        return bool(left == right)
    return type(left) is type(right) and bool(left == right)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ExpressionError(f"cannot convert {value!r} to int")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ExpressionError(f"cannot convert {value!r} to int") from None
    raise ExpressionError(f"cannot convert {value!r} to int")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ExpressionError(f"cannot convert {value!r} to float")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ExpressionError(f"cannot convert {value!r} to float") from None


def _string(value: Any) -> str:
    return value if isinstance(value, str) else to_json(value)


def _len(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise ExpressionError(f"len() of {type(value).__name__}")


def _from_json(text: Any) -> Any:
    try:
        return json.loads(str(text))
    except ValueError as error:
        raise ExpressionError(f"fromJSON: {error}") from None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "asInt": _int,
    "int": _int,
    "asFloat": _float,
    "float": _float,
    "string": _string,
    "toJson": to_json,
    "toJSON": to_json,
    "fromJSON": _from_json,
    "len": _len,
    "upper": lambda text: str(text).upper(),
    "lower": lambda text: str(text).lower(),
    "trim": lambda text: str(text).strip(),
    "jsonpath": lambda text, path: jsonpath(_from_json(text), str(path)),
}

CLOSURE_FUNCTIONS: dict[str, Callable[[list[Any], list[Any]], Any]] = {
    "filter": lambda items, results: [i for i, keep in zip(items, results, strict=True) if keep],
    "map": lambda items, results: results,
    "all": lambda items, results: all(_truth(r) for r in results),
    "any": lambda items, results: any(_truth(r) for r in results),
    "none": lambda items, results: not any(_truth(r) for r in results),
    "count": lambda items, results: sum(1 for r in results if _truth(r)),
}


# --- sprig -------------------------------------------------------------------------------------

_GO_LAYOUT = [
    ("2006", "%Y"),
    ("January", "%B"),
    ("Jan", "%b"),
    ("Monday", "%A"),
    ("Mon", "%a"),
    ("01", "%m"),
    ("02", "%d"),
    ("15", "%H"),
    ("03", "%I"),
    ("04", "%M"),
    ("05", "%S"),
    ("PM", "%p"),
    ("MST", "%Z"),
    ("-0700", "%z"),
    ("06", "%y"),
]


def _go_date(layout: Any, date: Any) -> str:
    """sprig's `date`: a time, or (like sprig for any other type, strings included) now."""
    moment = date if isinstance(date, datetime) else datetime.now(UTC)
    if isinstance(date, int | float) and not isinstance(date, bool):
        moment = datetime.fromtimestamp(date, UTC)
    pattern = str(layout)
    out = ""
    position = 0
    while position < len(pattern):
        for token, directive in _GO_LAYOUT:
            if pattern.startswith(token, position):
                out += moment.strftime(directive)
                position += len(token)
                break
        else:
            out += pattern[position]
            position += 1
    return out


def _sprig_int(value: Any) -> int:
    """sprig's toInt64 (via cast): numbers and numeric strings; anything else is 0."""
    try:
        return _int(value)
    except ExpressionError:
        try:
            return int(_float(value))
        except ExpressionError:
            return 0


SPRIG: dict[str, Callable[..., Any]] = {
    "add": lambda *values: sum(_sprig_int(v) for v in values),
    "sub": lambda a, b: _sprig_int(a) - _sprig_int(b),
    "mul": lambda *values: math.prod(_sprig_int(v) for v in values),
    "div": lambda a, b: _sprig_int(a) // _sprig_int(b),
    "mod": lambda a, b: _sprig_int(a) % _sprig_int(b),
    "max": lambda *values: max(_sprig_int(v) for v in values),
    "min": lambda *values: min(_sprig_int(v) for v in values),
    "b64enc": lambda text: base64.b64encode(str(text).encode()).decode(),
    "b64dec": lambda text: base64.b64decode(str(text)).decode(errors="replace"),
    "upper": lambda text: str(text).upper(),
    "lower": lambda text: str(text).lower(),
    "trim": lambda text: str(text).strip(),
    "toString": _string,
    "date": _go_date,
    "now": lambda: datetime.now(UTC),
}


# --- jsonpath ------------------------------------------------------------------------------


def jsonpath(document: Any, path: str) -> Any:
    """Argo's `jsonpath` (github.com/evilmonkeyinc/jsonpath): a definite path (`$.a.b`,
    `$[0].c`) gives its value, a path with a wildcard, slice or filter gives a list.
    Written here because Python's JSONPath libraries differ in exactly those two points
    (they always return lists, and write `&` where this dialect writes `&&`)."""
    text = path.strip()
    if not text.startswith("$"):
        raise ExpressionError(f"jsonpath {path!r} must start with $")
    values = [document]
    definite = True
    position = 1
    while position < len(text):
        if text.startswith("..", position):
            raise ExpressionError(f"jsonpath {path!r}: recursive descent is not supported locally")
        if text[position] == ".":
            match = re.compile(r"\.([A-Za-z0-9_\-$]+|\*)").match(text, position)
            if match is None:
                raise ExpressionError(f"jsonpath {path!r}: bad field at {text[position:]!r}")
            position = match.end()
            name = match.group(1)
            if name == "*":
                definite = False
                values = [v for value in values for v in _children(value)]
            else:
                values = [
                    value[name] for value in values if isinstance(value, dict) and name in value
                ]
            continue
        if text[position] == "[":
            end = _closing_bracket(text, position, path)
            selector = text[position + 1 : end].strip()
            position = end + 1
            values, selector_definite = _select(values, selector, path)
            definite = definite and selector_definite
            continue
        raise ExpressionError(f"jsonpath {path!r}: unexpected {text[position:]!r}")
    if definite:
        if not values:
            raise ExpressionError(f"jsonpath {path!r} matched nothing")
        return values[0]
    return values


def _closing_bracket(text: str, start: int, path: str) -> int:
    depth = 0
    quote = ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    raise ExpressionError(f"jsonpath {path!r}: missing ']'")


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[key] for key in sorted(value)]
    if isinstance(value, list):
        return list(value)
    return []


def _select(values: list[Any], selector: str, path: str) -> tuple[list[Any], bool]:
    if selector == "*":
        return [v for value in values for v in _children(value)], False
    if selector.startswith("?"):
        condition = selector[1:].strip()
        if condition.startswith("(") and condition.endswith(")"):
            condition = condition[1:-1]
        tree = _Parser(condition).parse()
        picked = []
        for value in values:
            for item in _children(value):
                try:
                    keep = _Evaluator({}).eval(tree, item)
                except ExpressionError:
                    keep = False
                if keep is True:
                    picked.append(item)
        return picked, False
    if selector[0] in "'\"":
        names = [_unquote(part.strip()) for part in selector.split(",")]
        found = [
            value[n] for value in values for n in names if isinstance(value, dict) and n in value
        ]
        return found, len(names) == 1
    if ":" in selector:
        parts = [part.strip() for part in selector.split(":")]
        bounds = [int(part) if part else None for part in parts[:2]]
        return [
            v for value in values if isinstance(value, list) for v in value[bounds[0] : bounds[1]]
        ], False
    try:
        indexes = [int(part) for part in selector.split(",")]
    except ValueError:
        raise ExpressionError(f"jsonpath {path!r}: unsupported selector [{selector}]") from None
    found = []
    for value in values:
        if isinstance(value, list):
            found += [value[i] for i in indexes if -len(value) <= i < len(value)]
    return found, len(indexes) == 1
