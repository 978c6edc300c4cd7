"""Provenance: the first link of the chain, from the user's file to a content-addressed dataset.

The data is canonicalised (typed, columns and rows in a fixed order) and hashed, split into
train/valid/test by a hash of each row's key, and written under `datasets/<digest>/`. The
same data therefore always gets the same digest and the same splits, whatever the file
format or row order, and a dataset that is already stored is not written twice.
"""

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from steps.core.attestation import data_resource
from steps.core.errors import BadInput
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.names import Artifact, DatasetFile, Param
from steps.core.outputs import report_progress
from steps.core.records import Record
from steps.core.registry import DATA_URI, SHARDS
from steps.core.specs import DataSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import (
    Dataset,
    DatasetManifest,
    Feature,
    FeatureKind,
    Split,
    SplitRows,
    dataset_key,
    decode_categories,
    load_dataset,
    read_manifest,
    split_file,
)

HASH = "blake3"
CANONICAL_FORMAT = "mlpipe-canonical-v3"
"""Name and version of the byte encoding `data_digest` hashes; bump it if the encoding changes."""

SPLIT_SCHEME = "sha256-rowkey-80-10-10-v1"
"""How rows are assigned to splits and shards (see `assign`); part of the dataset digest."""

_TRAIN_PERCENT, _VALID_PERCENT = 80, 10

SLICE_ROWS = 1 << 16
"""Rows of a column hashed at a time: the temporaries (validity bytes, floats with -0.0 as
0.0, string lengths) stay a few hundred KB, in the CPU cache, instead of a copy of the
whole column; the bytes hashed, and so the digest, do not depend on it."""


class RowCounts(Record):
    total: int
    train: int
    valid: int
    test: int


class ProvenanceRecord(Record):
    """provenance.json: where the dataset came from and how to find it again."""

    dataset_digest: str
    data_digest: str
    hash: str = HASH
    canonical_format: str = CANONICAL_FORMAT
    split_scheme: str = SPLIT_SCHEME
    source_uri: str
    dataset_uri: str
    shards: int
    rows: RowCounts
    reused: bool
    created: str


@dataclass(frozen=True)
class Assignment:
    """Per canonical row: its split and, for train/valid, its shard."""

    split: npt.NDArray[np.str_]
    shard: npt.NDArray[np.int64]


@dataclass(frozen=True)
class CanonicalTable:
    """The canonical table as `canonical_table` defines it, without a sorted copy: `table`
    holds the canonical columns and types with the rows as read, and `order` lists those rows
    in canonical order (None when they already are, the usual case).

    Sorting a shuffled table would cost a copy as large as the table (at 12M rows ~1.3 GB of
    fresh memory, whose page faults took longer than the gather itself): the digest and the
    split files read the rows through `order` instead, a window or a file at a time.
    """

    table: pa.Table
    order: npt.NDArray[np.int64] | None

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def rows(self, selected: npt.NDArray[np.bool_]) -> pa.Table:
        """The canonical rows where `selected` (one flag per canonical row), in canonical order."""
        if self.order is None:
            return self.table.filter(pa.array(selected))
        return _gathered(self.table, self.order[selected])


def canonical_table(dataset: Dataset) -> CanonicalTable:
    """The dataset with fixed types (numeric float64, row key string, label int8, categorical
    dictionary-encoded with one dictionary: the sorted categories that occur), columns sorted
    by name and rows in row key order, or in the order of every column without one.

    Missing numerics are Arrow nulls (not NaN), so NaN bit patterns cannot reach the hash.
    A row key must be unique: in key order, a repeated key sits next to itself.
    """
    names = sorted(str(c) for c in dataset.table.column_names)
    columns = {name: dataset.table.column(name) for name in names}
    table = pa.table(
        {
            name: _sorted_categories(column) if name in dataset.categorical else column
            for name, column in columns.items()
        }
    )
    if dataset.row_key is None:
        # Arrow cannot sort by dictionary columns; their codes sort as their sorted categories.
        keys = pa.table({name: _codes(table.column(name)) for name in names})
        order = pc.sort_indices(keys, [(name, "ascending") for name in names])
        return CanonicalTable(table, order.to_numpy().astype(np.int64, copy=False))
    keys = table.column(dataset.row_key)
    # Data exported by key (the usual case) is already in order: then no order to follow.
    if _strictly_increasing(keys):
        return CanonicalTable(table, None)
    # One chunk, kept in the table: the digest and the split files take keys from it at random.
    combined = keys.combine_chunks()
    table = table.set_column(
        table.schema.get_field_index(dataset.row_key), dataset.row_key, combined
    )
    order = _key_order(combined).to_numpy().astype(np.int64, copy=False)
    ordered_keys = _taken_strings(combined, order, _fixed_width_rows(combined))
    repeated = pc.equal(ordered_keys.slice(1), ordered_keys.slice(0, len(ordered_keys) - 1))
    if pc.any(repeated).as_py():
        values = pc.filter(ordered_keys.slice(1), repeated)
        shown = ", ".join(repr(v) for v in pc.unique(values).to_pylist()[:5])
        raise BadInput(
            f"data {dataset.source}: row key {dataset.row_key!r} is not unique: "
            f"{len(values)} repeated ({shown})"
        )
    return CanonicalTable(table, order)


def _key_order(keys: pa.Array) -> pa.Array:
    """Indices that put the row keys (strings, none missing) in bytewise order, the order
    Arrow's own string sort gives.

    Keys that all have the same length in bytes (generated IDs, UUIDs) are sorted as numbers
    by numpy: each byte position where keys differ becomes a bit field of the width its range
    of byte values needs (a digit 4 bits), most significant first, and the row's index goes
    in the low bits, so one plain sort of 64-bit integers gives the order (measured on 12M
    shuffled 11-byte IDs: 1.6 s CPU in all, the sort 0.95 s, against 1.9 s for numpy's argsort
    of 64-bit words and 3.1 s for Arrow's sort of the key's words as columns).
    Positions equal in every key (the "C00" of "C0012345678") cost nothing. When the fields
    do not all fit, the sort uses those that do, and the rows that tie on them are sorted
    again by all their bytes. Any other keys go to Arrow's string sort.
    """
    rows = _fixed_width_rows(keys)
    if rows is None:
        return pc.sort_indices(keys)
    low, high = rows.min(axis=0), rows.max(axis=0)
    differ = np.flatnonzero(low != high)
    index_bits = max(1, (len(rows) - 1).bit_length())
    code, used, fields = np.zeros(len(rows), np.uint64), 0, 0
    for position in differ:
        bits = int(high[position] - low[position]).bit_length()
        if used + bits + index_bits > 64:
            break
        code <<= np.uint64(bits)
        code |= rows[:, position] - low[position]
        used, fields = used + bits, fields + 1
    code <<= np.uint64(index_bits)
    code |= np.arange(len(rows), dtype=np.uint64)
    code.sort()
    tied = None
    if fields < len(differ):
        prefix = code >> np.uint64(index_bits)
        tied = np.flatnonzero(prefix[1:] == prefix[:-1])
    code &= np.uint64((1 << index_bits) - 1)
    order = code.view(np.int64)  # in place: at 12M rows, 100 MB less fresh memory
    if tied is not None:
        # Positions (in sorted order) of every row in a run of equal prefixes: the runs stay
        # where they are, so sorting all their rows at once by every byte sorts each run.
        runs = np.union1d(tied, tied + 1)
        ties = order[runs]
        order[runs] = ties[np.lexsort(rows[ties][:, differ].T[::-1])]
    return pa.array(order)


def _fixed_width_rows(keys: pa.Array) -> npt.NDArray[np.uint8] | None:
    """Each key's UTF-8 bytes as a row of a 2-D array when all have the same length (and
    none is missing), else None."""
    offsets, data = _string_span(keys)
    lengths = np.diff(offsets)
    width = int(lengths[0]) if len(lengths) else 0
    if keys.null_count or data is None or width == 0 or bool((lengths != width).any()):
        return None
    return np.frombuffer(data, np.uint8)[int(offsets[0]) : int(offsets[-1])].reshape(-1, width)


def _taken_strings(
    strings: pa.Array, rows: npt.NDArray[np.int64], fixed: npt.NDArray[np.uint8] | None
) -> pa.Array:
    """The strings at `rows`. Same-width strings (`fixed`: `_fixed_width_rows` of them) are
    gathered as fixed-size rows by numpy (~35% less CPU than Arrow's string take, which
    copies value by value)."""
    if fixed is None:
        return strings.take(rows)
    data = np.take(fixed, rows, axis=0)
    width = "<i8" if pa.types.is_large_string(strings.type) else "<i4"
    offsets = np.arange(len(rows) + 1, dtype=width) * fixed.shape[1]
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(strings.type, len(rows), buffers, null_count=0)


def _gathered(table: pa.Table, rows: npt.NDArray[np.int64]) -> pa.Table:
    """The table's `rows`, in that order, one column per thread (numpy releases the GIL).
    A dictionary column must have one dictionary, as `_sorted_categories` leaves it.

    Fixed-width columns (numbers, category codes, the label) are gathered by numpy from a
    contiguous copy (`_Scratch`) rather than by Arrow's take, which measured ~3x slower on a
    column with nulls (it moves the validity bitmap bit by bit: 0.46 s against 0.16 s for 12M
    float64) and slower still on a chunked column. Validity is gathered as one byte per row
    and packed again.
    """
    scratch = _Scratch()

    def take(column: pa.ChunkedArray) -> pa.Array:
        if _is_string(column.type):
            whole = _one_chunk(column)
            return _taken_strings(whole, rows, _fixed_width_rows(whole))
        codes = _codes(column)
        dtype = np.dtype(codes.type.to_pandas_dtype())
        # Into Arrow's allocator (numpy's asks the kernel for huge pages, and their faults
        # measured dearer here); mode="clip" lets numpy write `out` directly, unbuffered.
        values = pa.allocate_buffer(len(rows) * dtype.itemsize)
        source = _contiguous_values(codes, scratch)
        np.take(source, rows, out=np.frombuffer(values, dtype), mode="clip")
        bitmap, missing = None, 0
        if codes.null_count:
            present = np.take(_contiguous_validity(codes, scratch), rows)
            bitmap = pa.py_buffer(np.packbits(present, bitorder="little"))
            missing = len(rows) - int(present.sum())
        taken = pa.Array.from_buffers(codes.type, len(rows), [bitmap, values], null_count=missing)
        if pa.types.is_dictionary(column.type):
            return pa.DictionaryArray.from_arrays(taken, column.chunk(0).dictionary)
        return taken

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        columns = list(pool.map(take, table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


class _Scratch(threading.local):
    """Arrays each thread reuses from column to column. Fresh memory is what cost most when
    rows were gathered into a sorted copy of the table: its page faults took more system
    time than the gathers took user time."""

    def array(self, name: str, length: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        size = length * dtype.itemsize
        held: npt.NDArray[np.uint8] | None = self.__dict__.get(name)
        if held is None or len(held) < size:
            held = self.__dict__[name] = np.empty(size, np.uint8)
        return held[:size].view(dtype)


def _contiguous_values(
    column: pa.ChunkedArray, scratch: _Scratch, fill: int | None = None
) -> npt.NDArray[Any]:
    """A fixed-width column's values in one array numpy can index at random, with `fill`
    where missing unless None (Arrow's take on a chunked column measured ~19 ms per 64K
    rows taken from 12M)."""
    source, start = scratch.array("values", len(column), np.dtype(column.type.to_pandas_dtype())), 0
    for chunk in column.chunks:
        part, present = source[start : start + len(chunk)], _validity(chunk)
        part[:] = _values(chunk)
        if fill is not None and present is not None:
            part[~present] = fill
        start += len(chunk)
    return source


def _contiguous_validity(column: pa.ChunkedArray, scratch: _Scratch) -> npt.NDArray[np.bool_]:
    """One bool per row of the column, True where present, in one array."""
    source, start = scratch.array("present", len(column), np.dtype(np.bool_)), 0
    for chunk in column.chunks:
        present = _validity(chunk)
        source[start : start + len(chunk)] = True if present is None else present
        start += len(chunk)
    return source


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _sorted_categories(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """One dictionary for all chunks: the categories that occur, sorted; codes remapped.

    A chunk's own dictionary (one per Parquet row group, in order of appearance, perhaps
    with markers no row uses any more) says nothing about the data, so it is replaced.
    Codes are counted and remapped with numpy: Arrow's `unique` and `take` on a dictionary
    column measured ~5x slower here (they unify and re-check the dictionaries chunk by chunk).
    """
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    used = [_occurring(chunk) for chunk in column.chunks]
    categories = pc.unique(pa.chunked_array(used, column.type.value_type)).sort()
    chunks = [_recoded(chunk, categories) for chunk in column.chunks]
    return pa.chunked_array(chunks, pa.dictionary(pa.int32(), categories.type))


def _occurring(chunk: pa.DictionaryArray) -> pa.Array:
    """The entries of the chunk's dictionary that some row uses."""
    counts = np.bincount(chunk.indices.drop_null().to_numpy(), minlength=len(chunk.dictionary))
    return chunk.dictionary.filter(pa.array(counts > 0))


def _recoded(chunk: pa.DictionaryArray, categories: pa.Array) -> pa.DictionaryArray:
    """The chunk with `categories` as its dictionary."""
    position = pc.fill_null(pc.index_in(chunk.dictionary, value_set=categories), -1)
    if not len(position):  # an empty dictionary: every row is missing
        return pa.DictionaryArray.from_arrays(pa.nulls(len(chunk), pa.int32()), categories)
    # A missing row's code is whatever sits in its slot: clipped into range, then masked.
    codes = np.take(
        position.to_numpy().astype(np.int32), _values(chunk.indices).astype(np.int64), mode="clip"
    )
    present = _validity(chunk.indices)
    indices = pa.array(codes, pa.int32(), mask=None if present is None else ~present)
    return pa.DictionaryArray.from_arrays(indices, categories)


def _codes(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if not pa.types.is_dictionary(column.type):
        return column
    return pa.chunked_array([chunk.indices for chunk in column.chunks], column.type.index_type)


def _strictly_increasing(keys: pa.ChunkedArray) -> bool:
    if len(keys) < 2:
        return True
    return bool(pc.all(pc.less(keys.slice(0, len(keys) - 1), keys.slice(1))).as_py())


def data_digest(canonical: CanonicalTable) -> str:
    """BLAKE3 of the canonical table (as `canonical_table` returns it) in an encoding defined
    here, not borrowed.

    Arrow IPC or Parquet bytes depend on chunking, metadata and library version, so the
    bytes are spelled out. The digest is BLAKE3 of a JSON header (format, row count, column
    names and kinds) followed by the 32-byte BLAKE3 digest of each column's bytes, in order.
    A column's bytes, all little-endian: float64 and int8 columns give their null count
    (int64), then validity as one byte per row (1 present, 0 missing) only when that count
    is not zero, then the values (0 where missing, -0.0 as 0.0); strings give their UTF-8
    byte lengths (int64) then the concatenated UTF-8 bytes ("" where missing); categorical
    columns give the number of categories (int64), the categories as strings, then one
    int32 code per row: the category's position, -1 where missing.
    Columns are hashed in parallel, one per thread: numpy and BLAKE3 release the GIL.
    Rows not in canonical order are read through the order, a window at a time (`_Windows`).
    BLAKE3, not SHA-256: measured here at ~4.7 GB/s on one core against ~1.8 GB/s for
    hashlib's SHA-256 (benchmarks/hash_throughput.py prints both), and it reads numpy and
    Arrow buffers without copying them.
    """
    table = canonical.table
    header = {
        "format": CANONICAL_FORMAT,
        "hash": HASH,
        "rows": table.num_rows,
        "columns": [[field.name, _kind(field.type)] for field in table.schema],
    }
    digest = blake3.blake3(json.dumps(header, sort_keys=True).encode() + b"\n")
    windows = _Windows(canonical.order)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for column_digest in pool.map(
            lambda column: _column_digest(column, windows), table.columns
        ):
            digest.update(column_digest)
    return str(digest.hexdigest())


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        return "category"
    if pa.types.is_large_string(kind):
        return "string"
    return str(kind)


def _column_digest(column: pa.ChunkedArray, windows: "_Windows") -> bytes:
    digest = blake3.blake3()
    if pa.types.is_dictionary(column.type):
        categories = column.chunk(0).dictionary if column.num_chunks else pa.array([], pa.string())
        if any(not chunk.dictionary.equals(categories) for chunk in column.chunks):
            raise ValueError("a categorical column must have one dictionary (canonical_table)")
        digest.update(_raw(np.array([len(categories)], dtype="<i8")))
        _update_strings(digest, pa.chunked_array([categories]), _Windows(None))
        for codes in windows.filled(_codes(column), -1):
            digest.update(_raw(codes.astype("<i4", copy=False)))
    elif _is_string(column.type):
        _update_strings(digest, column, windows)
    else:
        digest.update(_raw(np.array([column.null_count], dtype="<i8")))
        for present in windows.present(column) if column.null_count else ():
            digest.update(_raw(present))
        for values in windows.filled(column, 0):
            little = values.astype(values.dtype.newbyteorder("<"), copy=False)
            if little.dtype.kind == "f":
                np.add(little, 0.0, out=little)  # -0.0 as 0.0
            digest.update(_raw(little))
    return digest.digest()


class _Windows:
    """A column's rows in canonical order, SLICE_ROWS at a time, as `data_digest` hashes them:
    zero-copy slices when the rows are in order, else each window's rows gathered by numpy
    from a contiguous copy of the column into a small buffer reused for every window."""

    def __init__(self, order: npt.NDArray[np.int64] | None) -> None:
        self.order = order
        self._scratch = _Scratch()

    def present(self, column: pa.ChunkedArray) -> Iterator[npt.NDArray[Any]]:
        """One byte per row: 1 present, 0 missing."""
        if self.order is None:
            for piece in _slices(column):
                present = _validity(piece)
                yield np.ones(len(piece), np.uint8) if present is None else present
            return
        yield from self._gathered(_contiguous_validity(column, self._scratch))

    def filled(self, column: pa.ChunkedArray, fill: int) -> Iterator[npt.NDArray[Any]]:
        """A fixed-width column's values, `fill` where missing; each window is the caller's
        to change until it asks for the next."""
        if self.order is None:
            for piece in _slices(column):
                values, present = _values(piece).copy(), _validity(piece)
                if present is not None:
                    values[~present] = fill
                yield values
            return
        yield from self._gathered(_contiguous_values(column, self._scratch, fill))

    def strings(self, column: pa.ChunkedArray) -> Iterator[pa.Array]:
        """A string column's values, "" where missing (Arrow lets a null slot span bytes)."""
        if self.order is None:
            pieces: Iterator[pa.Array] = _slices(column)
        else:
            whole = _one_chunk(column)
            fixed = _fixed_width_rows(whole)
            pieces = (_taken_strings(whole, rows, fixed) for rows in self._windows())
        for piece in pieces:
            yield pc.fill_null(piece, "") if piece.null_count else piece

    def _gathered(self, source: npt.NDArray[Any]) -> Iterator[npt.NDArray[Any]]:
        window = self._scratch.array("window", SLICE_ROWS, source.dtype)
        for rows in self._windows():
            # mode="clip" lets numpy write `out` directly, unbuffered (the rows are in range).
            yield np.take(source, rows, out=window[: len(rows)], mode="clip")

    def _windows(self) -> Iterator[npt.NDArray[np.int64]]:
        order = self.order if self.order is not None else np.empty(0, np.int64)
        for start in range(0, len(order), SLICE_ROWS):
            yield order[start : start + SLICE_ROWS]


def _slices(column: pa.ChunkedArray) -> Iterator[pa.Array]:
    """The column's rows in order, SLICE_ROWS at a time (zero-copy views)."""
    for chunk in column.chunks:
        for start in range(0, len(chunk), SLICE_ROWS):
            yield chunk.slice(start, SLICE_ROWS)


def _update_strings(digest: "blake3.blake3", column: pa.ChunkedArray, windows: _Windows) -> None:
    for piece in windows.strings(column):
        offsets, _ = _string_span(piece)
        digest.update(_raw(np.diff(offsets).astype("<i8")))
    for piece in windows.strings(column):
        offsets, data = _string_span(piece)
        if data is not None:
            digest.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])


def _values(chunk: pa.Array) -> npt.NDArray[np.generic]:
    """A fixed-width array's values (whatever sits in null slots), without copying."""
    dtype = np.dtype(chunk.type.to_pandas_dtype())
    return np.frombuffer(
        chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize
    )


def _validity(chunk: pa.Array) -> npt.NDArray[np.bool_] | None:
    """One bool per row from the validity bitmap, or None when nothing is missing."""
    if not chunk.null_count:
        return None
    skip = chunk.offset % 8  # bits of the first byte that belong to rows before this slice
    bits = np.frombuffer(
        chunk.buffers()[0],
        dtype=np.uint8,
        count=(skip + len(chunk) + 7) // 8,
        offset=chunk.offset // 8,
    )
    unpacked = np.unpackbits(bits, count=skip + len(chunk), bitorder="little")
    return unpacked[skip:].view(np.bool_)


def _string_span(chunk: pa.Array) -> tuple[npt.NDArray[np.int64], pa.Buffer | None]:
    """A string array's offsets (this slice of them) and its data buffer."""
    width = "<i8" if pa.types.is_large_string(chunk.type) else "<i4"
    offsets = np.frombuffer(chunk.buffers()[1], dtype=width)
    return offsets[chunk.offset : chunk.offset + len(chunk) + 1], chunk.buffers()[2]


def _raw(values: npt.NDArray[np.generic]) -> memoryview:
    """The array's bytes as a byte view (what BLAKE3 reads without copying)."""
    return np.ascontiguousarray(values).reshape(-1).view(np.uint8).data


def dataset_digest(data: str, shards: int) -> str:
    """The address of the stored dataset: the data digest plus its layout, so the same data
    split for 2 workers and for 4 never share (and never clobber) one folder."""
    layout = {"data_digest": data, "shards": shards, "split_scheme": SPLIT_SCHEME}
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()


def assign(canonical: CanonicalTable, row_key: str | None, shards: int) -> Assignment:
    """Split and shard of each canonical row from the first 8 bytes of SHA-256 of its key.

    The key is the row key, or the row's content (its values as text, joined) when there is
    none, so a row keeps its split when other rows come and go: 80% train, 10% valid, 10%
    test by `h % 100`; the shard is `(h // 100) % shards`, independent of the split.
    """
    hashes = _key_hashes(canonical.table, row_key)
    if canonical.order is not None:
        hashes = hashes[canonical.order]
    bucket = hashes % 100
    split = np.where(
        bucket < _TRAIN_PERCENT,
        Split.TRAIN.value,
        np.where(bucket < _TRAIN_PERCENT + _VALID_PERCENT, Split.VALID.value, Split.TEST.value),
    )
    return Assignment(split=split, shard=((hashes // 100) % shards).astype(np.int64))


def _key_hashes(table: pa.Table, row_key: str | None) -> npt.NDArray[np.uint64]:
    """The first 8 bytes of SHA-256 of each row's key, as a number, SLICE_ROWS rows at a
    time: hashlib takes Python strings, and a whole column of them would be several times
    the table (at 4M rows, ~0.5 GB of str and bytes objects)."""
    parts = [np.empty(0, dtype=">u8")]
    for start in range(0, table.num_rows, SLICE_ROWS):
        piece = table.slice(start, SLICE_ROWS)
        if row_key is not None:
            keys = piece.column(row_key)
        else:
            texts = [pc.fill_null(c.cast(pa.string()), "\x00") for c in piece.columns]
            keys = pc.binary_join_element_wise(*texts, "\x1f")
        digests = b"".join(hashlib.sha256(k.encode()).digest()[:8] for k in keys.to_pylist())
        parts.append(np.frombuffer(digests, dtype=">u8"))
    return np.concatenate(parts).astype(np.uint64)


def split_masks(assignment: Assignment, shards: int) -> dict[str, npt.NDArray[np.bool_]]:
    """Each file of the layout (path relative to the dataset) and which canonical rows it
    holds; none is empty. Masks, not tables: the files are cut and written one at a time."""
    files: dict[str, npt.NDArray[np.bool_]] = {}
    for split in Split:
        in_split = assignment.split == split.value
        if split is Split.TEST:
            files[split_file(split)] = in_split
            continue
        for shard in range(shards):
            files[split_file(split, shard)] = in_split & (assignment.shard == shard)
    empty = [name for name, rows in files.items() if not rows.any()]
    if empty:
        raise BadInput(
            f"{len(assignment.split)} rows are too few for {shards} shard(s): "
            f"{', '.join(empty)} would be empty; use fewer shards or more data"
        )
    return files


def build_manifest(
    dataset: Dataset, table: pa.Table, assignment: Assignment, address: str, data: str, shards: int
) -> DatasetManifest:
    """Features in canonical (name) order; categories sorted and taken over all splits."""
    features = []
    for name in table.column_names:
        if name in dataset.numeric:
            features.append(Feature(name=name, kind=FeatureKind.NUMERIC))
        elif name in dataset.categorical:
            column = table.column(name)
            categories = column.chunk(0).dictionary.to_pylist() if column.num_chunks else []
            features.append(Feature(name=name, kind=FeatureKind.CATEGORICAL, categories=categories))
    counts = {split: int((assignment.split == split.value).sum()) for split in Split}
    return DatasetManifest(
        digest=address,
        hash=HASH,
        data_digest=data,
        shards=shards,
        rows=SplitRows(
            train=counts[Split.TRAIN], valid=counts[Split.VALID], test=counts[Split.TEST]
        ),
        label=dataset.label,
        row_key=dataset.row_key,
        slice_column=dataset.slice_column,
        features=features,
    )


def upload_dataset(
    store: ArtifactStore,
    manifest: DatasetManifest,
    canonical: CanonicalTable,
    files: dict[str, npt.NDArray[np.bool_]],
) -> None:
    """Split files first, the manifest last: readers treat a manifest as "complete".

    Each file is cut from the table (its rows in canonical order), written, uploaded and
    freed before the next: only one file's rows (as strings, the split files' form) exist
    beside the table at a time.
    """
    prefix = dataset_key(manifest.digest)
    with tempfile.TemporaryDirectory(prefix="mlpipe-dataset-") as tmp:
        for name, rows in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(decode_categories(canonical.rows(rows)), path)
            store.upload_file(path, f"{prefix}/{name}")
    store.put_json(
        f"{prefix}/{DatasetFile.MANIFEST.value}",
        manifest.model_dump(mode="json", exclude_none=True),
    )


def run_provenance(
    data_uri: str,
    spec: DataSpec,
    shards: int,
    store: ArtifactStore,
    out: Path,
    progress_file: Path | None = None,
) -> ProvenanceRecord:
    """Canonicalise, hash and store the data at `data_uri`; write provenance.json.

    A dataset whose manifest is already stored is reused as is: same digest, same bytes.
    """
    if shards < 1:
        raise BadInput(f"--shards must be at least 1, got {shards}")
    report_progress(progress_file, 0, 3)
    dataset = load_dataset(data_uri, spec, store)
    canonical = canonical_table(dataset)
    data = data_digest(canonical)
    address = dataset_digest(data, shards)
    prefix = dataset_key(address)
    report_progress(progress_file, 1, 3)
    reused = store.exists(f"{prefix}/{DatasetFile.MANIFEST.value}")
    if reused:
        manifest = read_manifest(store, store.uri(prefix))
    else:
        assignment = assign(canonical, dataset.row_key, shards)
        files = split_masks(assignment, shards)
        manifest = build_manifest(dataset, canonical.table, assignment, address, data, shards)
        upload_dataset(store, manifest, canonical, files)
    report_progress(progress_file, 2, 3)
    record = ProvenanceRecord(
        dataset_digest=address,
        data_digest=data,
        source_uri=data_uri,
        dataset_uri=store.uri(prefix),
        shards=shards,
        rows=RowCounts(total=canonical.num_rows, **manifest.rows.model_dump()),
        reused=reused,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.PROVENANCE.filename).write_text(record.model_dump_json(indent=2) + "\n")
    report_progress(progress_file, 3, 3)
    return record


def run(ctx: StepContext) -> Outcome:
    data_uri, spec, shards = ctx.get(DATA_URI), ctx.spec(DataSpec), ctx.get(SHARDS)
    record = run_provenance(data_uri, spec, shards, ctx.store, ctx.out, ctx.progress_file)
    return Outcome(
        parameters={
            Param.DATASET_DIGEST: record.dataset_digest,
            Param.DATASET_URI: record.dataset_uri,
            Param.ROWS: record.rows.total,
        },
        statement=Statement(
            output_keys=[f"{dataset_key(record.dataset_digest)}/"],
            inputs=[data_resource(ctx.store, data_uri)],
            parameters={
                "data_spec": spec.model_dump(mode="json"),
                "shards": shards,
                "dataset_digest": record.dataset_digest,
                "data_digest": record.data_digest,
                "canonical_format": record.canonical_format,
                "hash": record.hash,
            },
        ),
    )
