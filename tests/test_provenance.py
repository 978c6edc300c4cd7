"""Provenance: one digest per dataset whatever its format or row order, stable splits, a
complete content-addressed layout in S3, and nothing written for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from steps.core.errors import BadInput
from steps.core.names import Artifact, DatasetFile, Param
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_dataset, load_split, read_manifest
from steps.data.synth import data_spec, generate
from steps.provenance.step import assign, canonical_table, data_digest, run_provenance

SPEC = data_spec()


def run_step(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "steps", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


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
        keys = table.column("customer_id").to_pylist()
        placed[name] = dict(
            zip(keys, zip(assignment.split, assignment.shard, strict=True), strict=True)
        )
    assert all(placed["large"][key] == where for key, where in placed["small"].items())
    shares = pd.Series([s for s, _ in placed["large"].values()]).value_counts(normalize=True)
    assert abs(shares["train"] - 0.8) < 0.03
    assert abs(shares["valid"] - 0.1) < 0.02
    assert abs(shares["test"] - 0.1) < 0.02


@pytest.fixture
def stored(store: ArtifactStore, tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    frame = generate(1000, seed=6)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    return frame, tmp_path / "d.parquet"


def test_dataset_round_trips_through_s3(
    store: ArtifactStore, stored: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    frame, path = stored
    record = run_provenance(str(path), SPEC, 3, store, tmp_path / "out")
    manifest = read_manifest(store, record.dataset_uri)
    assert record.dataset_uri == store.uri(f"datasets/{record.dataset_digest}")
    assert manifest.digest == record.dataset_digest
    assert manifest.data_digest == record.data_digest
    assert manifest.shards == 3
    assert [f.name for f in manifest.features] == sorted(f.name for f in manifest.features)
    region = next(f for f in manifest.features if f.name == "region")
    assert region.categories == sorted(frame["region"].unique())

    parts = {split: load_split(store, record.dataset_uri, split) for split in Split}
    keys = [set(part["customer_id"]) for part in parts.values()]
    assert sum(len(k) for k in keys) == len(frame) == record.rows.total
    assert set().union(*keys) == set(frame["customer_id"]), "every row lands in one split"
    assert {s: len(p) for s, p in parts.items()} == manifest.rows.model_dump()

    shards = [load_split(store, record.dataset_uri, Split.TRAIN, shard) for shard in range(3)]
    assert sum(len(s) for s in shards) == manifest.rows.train
    assert all(len(s) for s in shards)
    train = parts[Split.TRAIN]
    assert train["churned"].dtype == "int8"
    assert train["monthly_charges"].dtype == "float64"
    assert train["region"].dtype == "str"
    by_key = frame.set_index("customer_id").loc[train["customer_id"]]
    assert train["churned"].tolist() == (by_key["churned"] == "yes").astype(int).tolist()
    assert train["total_charges"].isna().tolist() == by_key["total_charges"].isna().tolist()

    with pytest.raises(BadInput, match="shard 3 out of range"):
        load_split(store, record.dataset_uri, Split.VALID, 3)
    with pytest.raises(BadInput, match="test split is one file"):
        load_split(store, record.dataset_uri, Split.TEST, 0)


def test_a_stored_dataset_is_reused_not_rewritten(
    store: ArtifactStore, stored: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    frame, path = stored
    first = run_provenance(str(path), SPEC, 2, store, tmp_path / "one")
    keys = store.list("datasets/")
    frame.sample(frac=1, random_state=3).to_csv(tmp_path / "again.csv", index=False)
    again = run_provenance(str(tmp_path / "again.csv"), SPEC, 2, store, tmp_path / "two")
    assert (first.reused, again.reused) == (False, True)
    assert again.dataset_digest == first.dataset_digest
    assert again.rows == first.rows
    assert store.list("datasets/") == keys

    other_layout = run_provenance(str(path), SPEC, 4, store, tmp_path / "three")
    assert other_layout.data_digest == first.data_digest
    assert other_layout.dataset_digest != first.dataset_digest


def test_too_many_shards_for_the_rows_writes_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    generate(40, seed=1).to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(BadInput, match="too few for 8 shard"):
        run_provenance(str(tmp_path / "d.parquet"), SPEC, 8, store, tmp_path / "out")
    assert store.list("") == []


def test_cli_writes_dataset_record_and_parameters(
    store: ArtifactStore, s3_env: dict[str, str], stored: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    _, path = stored
    out = tmp_path / "out"
    result = run_step(
        s3_env, "provenance", "--data-uri", str(path), "--data-spec", SPEC.model_dump_json(),
        "--shards", "2", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((out / Artifact.PROVENANCE.filename).read_text())
    digest = (out / "parameters" / Param.DATASET_DIGEST).read_text()
    assert record["dataset_digest"] == digest
    assert record["source_uri"] == str(path)
    assert record["hash"] == "blake3"
    assert (out / "parameters" / Param.ROWS).read_text() == "1000"
    assert (out / "parameters" / Param.DATASET_URI).read_text() == store.uri(f"datasets/{digest}")
    assert store.exists(f"datasets/{digest}/{DatasetFile.MANIFEST.value}")


BAD_FILES = {
    "missing file": (None, "data file not found"),
    "corrupt parquet": (b"PAR1\x00\x01garbage", "cannot read parquet file"),
    "ragged csv": (b"customer_id,x,churned\na,1,yes\nb,2\n", "Expected 3 columns, got 2"),
    "empty file": (b"", "Empty CSV file"),
    "label missing": (b"customer_id,x\na,1\nb,2\n", "label column(s) ['churned'] not found"),
    "one class": (b"customer_id,x,churned\na,1,no\nb,2,no\n", "has one class only"),
    "NaN labels": (b"customer_id,x,churned\na,1,yes\nb,2,NA\nc,3,no\n", "has 1 missing values"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_cli_bad_input_exits_2_and_writes_nothing_to_s3(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path, case: str
) -> None:
    content, message = BAD_FILES[case]
    path = tmp_path / ("d.parquet" if case == "corrupt parquet" else "d.csv")
    if content is not None:
        path.write_bytes(content)
    spec = SPEC.model_copy(update={"categorical": [], "slice_column": None})
    result = run_step(
        s3_env, "provenance", "--data-uri", str(path), "--data-spec", spec.model_dump_json(),
        "--shards", "2", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: data ")
    assert "Traceback" not in result.stderr
    assert store.list("") == []
    assert not (tmp_path / "out" / Artifact.PROVENANCE.filename).exists()
