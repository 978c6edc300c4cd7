"""Provenance: one digest per dataset whatever its format or row order, stable splits, a
complete content-addressed layout in S3, and nothing written for bad input."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from steps.data.dataset import load_dataset
from steps.data.synth import data_spec, generate
from steps.provenance.step import _key_order, assign, canonical_table, data_digest

SPEC = data_spec()


def digest_of(path: Path) -> str:
    return data_digest(canonical_table(load_dataset(str(path), SPEC, None)))


def test_digest_ignores_row_order_and_file_format(tmp_path: Path) -> None:
    frame = generate(500, seed=4)
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.sample(frac=1, random_state=1).to_csv(tmp_path / "b.csv", index=False)
    frame[list(reversed(frame.columns))].to_parquet(tmp_path / "c.parquet", index=False)
    digests = {digest_of(tmp_path / n) for n in ["a.parquet", "b.csv", "c.parquet"]}
    assert len(digests) == 1

    changed = frame.copy()
    changed.loc[17, "monthly_charges"] += 0.01
    changed.to_parquet(tmp_path / "d.parquet", index=False)
    assert digest_of(tmp_path / "d.parquet") not in digests


def test_digest_without_row_key_uses_content(tmp_path: Path) -> None:
    frame = generate(300, seed=4).drop(columns=["customer_id"])
    spec = SPEC.model_copy(update={"row_key": None})
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.iloc[::-1].to_csv(tmp_path / "b.csv", index=False)
    tables = [
        canonical_table(load_dataset(str(tmp_path / n), spec, None)) for n in ["a.parquet", "b.csv"]
    ]
    assert data_digest(tables[0]) == data_digest(tables[1])
    first, second = (assign(t, None, 2) for t in tables)
    assert np.array_equal(first.split, second.split)


def test_digest_ignores_chunking_dictionaries_and_missing_spellings(tmp_path: Path) -> None:
    """Parquet row groups each carry their own category dictionary (in order of appearance,
    markers included); the digest sees only the categories rows hold, so none of that shows."""
    frame = generate(600, seed=5)
    frame.loc[[3, 40, 41], "region"] = None
    frame.loc[7, "usage_gb"] = 0.0
    frame.to_parquet(tmp_path / "one.parquet", index=False)
    shuffled = frame.sample(frac=1, random_state=2)
    shuffled.to_parquet(tmp_path / "groups.parquet", index=False, row_group_size=50)
    frame.to_csv(tmp_path / "markers.csv", index=False, na_rep="?")
    spelled = frame.assign(region=frame["region"].fillna("N/A"))
    spelled.loc[7, "usage_gb"] = -0.0
    spelled.to_parquet(tmp_path / "spelled.parquet", index=False)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    nan = pa.array(frame["age"].to_numpy())  # NaN, where pandas' own writer puts nulls
    assert pc.is_nan(nan).to_numpy(zero_copy_only=False).sum() == frame["age"].isna().sum() > 0
    pq.write_table(table.set_column(table.schema.get_field_index("age"), "age", nan),
                   tmp_path / "nan.parquet")  # fmt: skip
    names = ["one.parquet", "groups.parquet", "markers.csv", "spelled.parquet", "nan.parquet"]
    assert len({digest_of(tmp_path / name) for name in names}) == 1

    unkeyed = SPEC.model_copy(update={"row_key": None, "exclude": ["customer_id"]})
    without_key = [
        data_digest(canonical_table(load_dataset(str(tmp_path / name), unkeyed, None)))
        for name in ["one.parquet", "groups.parquet"]
    ]
    assert without_key[0] == without_key[1]


def test_digest_sees_each_value_in_its_row(tmp_path: Path) -> None:
    frame = generate(400, seed=9)
    frame.to_parquet(tmp_path / "base.parquet", index=False)
    base = digest_of(tmp_path / "base.parquet")
    changed = frame.copy()
    changed.loc[5, "plan"] = next(p for p in frame["plan"].unique() if p != frame.loc[5, "plan"])
    swapped = frame.copy()
    first, second = swapped.index[swapped["plan"] != swapped.loc[0, "plan"]][0], 0
    swapped.loc[[first, second], "plan"] = swapped.loc[[second, first], "plan"].to_numpy()
    missing = frame.copy()
    missing.loc[5, "plan"] = None
    variants = {"changed": changed, "swapped": swapped, "missing": missing}
    for name, variant in variants.items():
        variant.to_parquet(tmp_path / f"{name}.parquet", index=False)
    digests = {name: digest_of(tmp_path / f"{name}.parquet") for name in variants}
    assert base not in digests.values()
    assert len(set(digests.values())) == len(variants)


def test_a_row_keeps_its_split_when_rows_are_added(tmp_path: Path) -> None:
    spec = SPEC
    frame = generate(3000, seed=8)
    frame.iloc[:1000].to_parquet(tmp_path / "small.parquet", index=False)
    frame.to_parquet(tmp_path / "large.parquet", index=False)
    placed = {}
    for name in ["small", "large"]:
        table = canonical_table(load_dataset(str(tmp_path / f"{name}.parquet"), spec, None))
        assignment = assign(table, "customer_id", 2)
        keys = table.rows(np.ones(table.num_rows, np.bool_)).column("customer_id").to_pylist()
        placed[name] = dict(
            zip(keys, zip(assignment.split, assignment.shard, strict=True), strict=True)
        )
    assert all(placed["large"][key] == where for key, where in placed["small"].items())
    shares = pd.Series([s for s, _ in placed["large"].values()]).value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.03
    assert abs(shares["valid"] - 0.1) < 0.02
    assert abs(shares["test"] - 0.1) < 0.02


CANONICAL_V3_VECTOR = "8ed07ad48c25f615bf1bfe8c188985a6dffa29da96921ef23800a437d9734f21"
"""data_digest of the table below, computed by the whole-column implementation that first
defined mlpipe-canonical-v3 (before hashing went slice by slice): any change to the bytes
hashed shows here, and needs a new CANONICAL_FORMAT."""


def test_digest_is_pinned_and_independent_of_slicing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = generate(70_000, seed=11)
    frame.loc[[3, 40, 69_999], "region"] = None
    frame.loc[[5, 66_000], "usage_gb"] = None
    frame.loc[7, "usage_gb"] = -0.0
    frame.to_parquet(tmp_path / "g.parquet", index=False, row_group_size=30_000)
    assert digest_of(tmp_path / "g.parquet") == CANONICAL_V3_VECTOR
    # Out of key order, each window of rows is gathered through the order (numpy takes from
    # chunks of uneven sizes, nulls moved with their rows): the same rows, the same digest.
    shuffled = frame.sample(frac=1, random_state=6)
    shuffled.to_parquet(tmp_path / "s.parquet", index=False, row_group_size=23_000)
    ordered, gathered = (
        canonical_table(load_dataset(str(tmp_path / name), SPEC, None))
        for name in ["g.parquet", "s.parquet"]
    )
    everything = np.ones(ordered.num_rows, np.bool_)
    assert ordered.order is None and gathered.order is not None
    assert gathered.rows(everything).equals(ordered.rows(everything))
    assert gathered.table.column("usage_gb").null_count == 2
    assert data_digest(gathered) == CANONICAL_V3_VECTOR
    # Slices that start mid-byte of the validity bitmap and span row groups unevenly.
    monkeypatch.setattr("steps.provenance.step.SLICE_ROWS", 997)
    assert digest_of(tmp_path / "g.parquet") == CANONICAL_V3_VECTOR
    assert digest_of(tmp_path / "s.parquet") == CANONICAL_V3_VECTOR


def test_assignment_is_sha256_of_each_key_whatever_the_slicing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys are hashed SLICE_ROWS at a time; each row's split and shard must still come from
    SHA-256 of its own key (the row key, or the row's values joined when there is none)."""
    generate(3000, seed=12).to_parquet(tmp_path / "d.parquet", index=False)
    monkeypatch.setattr("steps.provenance.step.SLICE_ROWS", 997)
    unkeyed = SPEC.model_copy(update={"row_key": None, "exclude": ["customer_id"]})
    for spec in (SPEC, unkeyed):
        table = canonical_table(load_dataset(str(tmp_path / "d.parquet"), spec, None))
        canonical = table.rows(np.ones(table.num_rows, np.bool_))
        if spec.row_key is not None:
            keys = canonical.column(spec.row_key).to_pylist()
        else:
            rows = zip(*(c.cast(pa.string()).to_pylist() for c in canonical.columns), strict=True)
            keys = ["\x1f".join("\x00" if v is None else v for v in row) for row in rows]
        numbers = [int.from_bytes(hashlib.sha256(k.encode()).digest()[:8]) for k in keys]
        assignment = assign(table, spec.row_key, 3)
        buckets = np.array([n % 100 for n in numbers])
        expected = np.where(buckets < 80, "train", np.where(buckets < 90, "valid", "test"))
        assert np.array_equal(assignment.split, expected)
        assert assignment.shard.tolist() == [n // 100 % 3 for n in numbers]


def test_key_order_is_arrows_bytewise_string_order() -> None:
    """Same-length keys are sorted as packed bit fields of the byte positions where they
    differ; that must be the string order exactly: bytes >= 0x80 (UTF-8), keys that differ
    only in their last byte, a shared prefix ("C000..."), a slice of a larger array, and keys
    with more differing positions than 64 bits hold, whose ties on the first ones are sorted
    again by all their bytes (two-symbol keys: 7 bits a position, every run of 20+ rows)."""
    rng = np.random.default_rng(3)
    alphabet = np.array(list("aZ09é€\x00"))
    cases = [
        ["".join(rng.choice(alphabet, width)) for _ in range(3000)] for width in (1, 7, 8, 11, 36)
    ]
    cases.append([f"C{i:010d}" for i in rng.permutation(3000)])
    cases.append(["".join(rng.choice(["\x01", "\x7f"], 30)) for _ in range(3000)])
    for keys in cases:
        size = len(keys[0].encode())
        keys = list(dict.fromkeys(k for k in keys if len(k.encode()) == size))
        array = pa.array(["pad", *keys, "pad"]).slice(1, len(keys))
        expected = pc.sort_indices(array).to_pylist()
        assert _key_order(array).to_pylist() == expected, keys[:3]
    mixed = pa.array(["b", "ab", "a", "abc", "B"])  # lengths differ: Arrow's own sort
    assert _key_order(mixed).to_pylist() == pc.sort_indices(mixed).to_pylist()
