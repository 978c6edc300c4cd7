"""Tensors of the Open Inference Protocol: their JSON header, and their data either inline
as JSON or in the binary tensor data extension (what `tritonclient` sends by default).

Numeric data (FP32, FP64, INT64) becomes floats: float64 from JSON (so a value too large
for FP32 can be named rather than silently become infinity) and from FP64/INT64 binary
data, float32 from FP32 binary data; the model casts to float32 once per batch. JSON `null`
is a missing value (NaN), since JSON has no NaN. BYTES data becomes a list of
`str | None`: raw values that the protocol layer encodes with the feature schema.
"""

import struct
from math import prod
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

NUMERIC: dict[str, np.dtype[np.number]] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT64": np.dtype("<i8"),
}
BYTES = "BYTES"
DATATYPES = [*NUMERIC, BYTES]
MAX_RANK = 8
"""More dimensions than any tensor here needs; also bounds how deep data may nest."""
_LENGTH = struct.Struct("<I")
"""Each BYTES element in binary data: a 4-byte little-endian length, then its bytes."""


class TensorError(Exception):
    """A tensor that breaks the protocol; the message names the tensor."""


class TensorHeader(NamedTuple):
    """What the JSON says about one input tensor, before its data is looked at.
    (A NamedTuple: built per tensor per request, where a frozen dataclass costs ~1 us.)"""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: object
    """The inline JSON data, or None when the data is binary."""
    binary_size: int | None
    """Bytes of this tensor in the binary section, or None when the data is inline."""
    size: int
    """How many values the shape holds."""


def parse_header(tensor: object) -> TensorHeader:
    """Check one element of a request's `inputs` list (not its data: that may be large)."""
    if not isinstance(tensor, dict):
        raise TensorError("each input must be a JSON object")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise TensorError("each input needs a 'name' string")
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise TensorError(
            f"input {name!r} has datatype {datatype!r}; supported: {', '.join(DATATYPES)}"
        )
    shape_and_size = _shape(tensor.get("shape"))
    if shape_and_size is None:
        raise TensorError(
            f"input {name!r} needs 'shape': a list of at most {MAX_RANK} non-negative integers"
        )
    parameters = tensor.get("parameters")
    binary_size = parameters.get("binary_data_size") if type(parameters) is dict else None
    data = tensor.get("data")
    if (data is None) == (binary_size is None):
        raise TensorError(
            f"input {name!r} needs exactly one of 'data' or parameters.binary_data_size"
        )
    if binary_size is not None and (type(binary_size) is not int or binary_size < 0):
        raise TensorError(f"input {name!r} has a binary_data_size that is not a byte count")
    shape, size = shape_and_size
    return TensorHeader(name, datatype, shape, data, binary_size, size)


def _shape(value: object) -> tuple[tuple[int, ...], int] | None:
    """A shape and how many values it holds, if `value` is a list of at most MAX_RANK
    non-negative integers (JSON booleans are not integers here); else None."""
    if type(value) is not list or len(value) > MAX_RANK:
        return None
    size = 1
    for dim in value:
        if type(dim) is not int or dim < 0:
            return None
        size *= dim
    return tuple(value), size


def numeric_values(header: TensorHeader, binary: memoryview | None) -> NDArray[np.floating]:
    """The values of a numeric tensor as floats (NaN where JSON says null), flat or
    already in the tensor's shape: reshape them."""
    if binary is not None:
        dtype = NUMERIC[header.datatype]
        if len(binary) != header.size * dtype.itemsize:
            raise TensorError(
                f"input {header.name!r} has {len(binary)} bytes of binary data; shape "
                f"{list(header.shape)} of {header.datatype} needs {header.size * dtype.itemsize}"
            )
        values = np.frombuffer(binary, dtype=dtype)
        return values if header.datatype == "FP32" else values.astype(np.float64)
    if type(header.data) is not list:
        raise TensorError(f"input {header.name!r} needs 'data': a list of numbers")
    try:
        # float64 holds every INT64 feature value exactly enough to check it is integral,
        # and every JSON number without overflow (the row check names what FP32 cannot hold).
        values = np.array(header.data, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise TensorError(
            f"input {header.name!r} data must be numbers (null for missing), "
            f"flat or nested as shape {list(header.shape)}"
        ) from None
    _check_layout(header, values.shape)
    if header.datatype == "INT64" and not np.all(np.isnan(values) | (values == np.trunc(values))):
        raise TensorError(f"input {header.name!r} is INT64 but holds fractional numbers")
    return values


def bytes_values(header: TensorHeader, binary: memoryview | None) -> list[str | None]:
    """The flat values of a BYTES tensor, as text (None where JSON says null)."""
    if binary is not None:
        values: list[str | None] = [_text(header, item) for item in _split_bytes(header, binary)]
    else:
        if not isinstance(header.data, list):
            raise TensorError(f"input {header.name!r} needs 'data': a list of strings")
        values = []
        dims = _flatten(header, header.data, values, len(header.shape))
        _check_layout(header, dims)
    if len(values) != header.size:
        raise TensorError(
            f"input {header.name!r} has {len(values)} values; "
            f"shape {list(header.shape)} needs {header.size}"
        )
    return values


def _check_layout(header: TensorHeader, dims: tuple[int, ...]) -> None:
    """Data may be flat or nested; nested, it must have the declared shape."""
    if prod(dims) != header.size or (len(dims) > 1 and dims != header.shape):
        raise TensorError(
            f"input {header.name!r} data has shape {list(dims)}; shape "
            f"{list(header.shape)} needs {header.size} values, flat or nested"
        )


def _flatten(
    header: TensorHeader, data: list[object], out: list[str | None], depth: int
) -> tuple[int, ...]:
    """Append the leaves of nested lists to `out`; returns the nesting's shape. Lists may
    nest at most `depth` deep (the tensor's rank), so hostile nesting ends early."""
    if depth < 1:
        raise TensorError(f"input {header.name!r} data nests deeper than its shape")
    if not data or not isinstance(data[0], list):
        for value in data:
            if value is not None and not isinstance(value, str):
                raise TensorError(
                    f"input {header.name!r} is BYTES: its values must be strings (null for "
                    f"missing), not {type(value).__name__}"
                )
            out.append(value)
        return (len(data),)
    shapes = set()
    for row in data:
        if not isinstance(row, list):
            raise TensorError(f"input {header.name!r} data mixes lists and values")
        shapes.add(_flatten(header, row, out, depth - 1))
    if len(shapes) != 1:
        raise TensorError(f"input {header.name!r} data has rows of different lengths")
    return (len(data), *shapes.pop())


def _split_bytes(header: TensorHeader, binary: memoryview) -> list[bytes]:
    items = []
    offset = 0
    while offset < len(binary):
        if offset + _LENGTH.size > len(binary):
            raise TensorError(f"input {header.name!r} binary BYTES data is truncated")
        (length,) = _LENGTH.unpack_from(binary, offset)
        offset += _LENGTH.size
        if offset + length > len(binary):
            raise TensorError(f"input {header.name!r} binary BYTES data is truncated")
        items.append(bytes(binary[offset : offset + length]))
        offset += length
    return items


def _text(header: TensorHeader, item: bytes) -> str:
    try:
        return item.decode()
    except UnicodeDecodeError:
        raise TensorError(f"input {header.name!r} holds bytes that are not UTF-8 text") from None
