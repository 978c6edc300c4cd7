"""Provenance: one digest per dataset whatever its format or row order, stable splits, a
complete content-addressed layout in S3, and nothing written for bad input."""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.core.errors import BadInput
from steps.core.names import Artifact, DatasetFile, Param
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.synth import data_spec, generate
from steps.provenance.step import run_provenance
from tests.support.commands import run_step

SPEC = data_spec()


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
    result = run_step([
        "provenance", "--data-uri", str(path), "--data-spec", SPEC.model_dump_json(),
        "--shards", "2", "--out", str(out),
    ], s3_env)  # fmt: skip
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
    result = run_step([
        "provenance", "--data-uri", str(path), "--data-spec", spec.model_dump_json(),
        "--shards", "2", "--out", str(tmp_path / "out"),
    ], s3_env)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: data ")
    assert "Traceback" not in result.stderr
    assert store.list("") == []
    assert not (tmp_path / "out" / Artifact.PROVENANCE.filename).exists()


def test_a_shuffled_copy_gets_the_same_digest_and_byte_identical_files(
    store: ArtifactStore, tmp_path: Path
) -> None:
    """Rows out of key order are read through the key order, not sorted into a copy: the
    digest and every split file must still be those of the key-ordered copy, to the byte."""
    frame = generate(3000, seed=13)
    frame.loc[[4, 900, 2999], "region"] = None
    frame.loc[[7, 1500], "usage_gb"] = None
    frame.to_parquet(tmp_path / "ordered.parquet", index=False)
    shuffled = frame.sample(frac=1, random_state=4)
    shuffled.to_parquet(tmp_path / "shuffled.parquet", index=False, row_group_size=700)
    written = {}
    for name in ["shuffled", "ordered"]:
        record = run_provenance(str(tmp_path / f"{name}.parquet"), SPEC, 2, store, tmp_path / name)
        assert not record.reused
        keys = store.list("datasets/")
        written[name] = (record.data_digest, {key: store.get_bytes(key) for key in keys})
        for key in keys:
            store.delete(key)
    assert written["shuffled"] == written["ordered"]
    files = written["ordered"][1]
    assert len(files) == 6  # train and valid in 2 shards, test, the manifest
    parts = {key: pq.read_table(pa.BufferReader(data)) for key, data in files.items()
             if key.endswith(".parquet")}  # fmt: skip
    assert sum(part.column("region").null_count for part in parts.values()) == 3
    for part in parts.values():
        ids = part.column("customer_id").to_pylist()
        assert ids == sorted(ids), "each file's rows in key order"
