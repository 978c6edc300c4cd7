"""Reading the user's data: the DataSpec applied, and every kind of bad file refused clearly."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from steps.core.errors import BadInput
from steps.core.specs import DataSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import _numeric, load_dataset, read_table
from steps.data.synth import data_spec, generate
from steps.provenance.step import canonical_table

SPEC = data_spec()


def small_frame() -> pd.DataFrame:
    return generate(300, seed=2)


def test_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    frame = small_frame()
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    frame.to_csv(tmp_path / "d.csv", index=False)
    from_parquet = load_dataset(str(tmp_path / "d.parquet"), SPEC, None)
    from_csv = load_dataset(str(tmp_path / "d.csv"), SPEC, None)
    pd.testing.assert_frame_equal(from_parquet.frame, from_csv.frame)
    loaded = from_parquet.frame
    assert loaded["tenure_months"].dtype == "float64"
    assert loaded["region"].dtype == "str"
    assert loaded["churned"].dtype == "int8"
    assert from_parquet.categorical == ["region", "plan", "contract", "payment_method"]
    assert "customer_id" not in from_parquet.features
    assert "churned" not in from_parquet.features
    assert int(loaded["churned"].sum()) == int((frame["churned"] == "yes").sum())


def test_missing_markers_become_missing(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,color,size,y\na,red,1.5,1\nb,N/A,?,0\nc,?,2,1\n")
    spec = DataSpec(label="y", positive_class=1, categorical=["color"], row_key="id")
    frame = load_dataset(str(tmp_path / "d.csv"), spec, None).frame
    assert frame["color"].isna().tolist() == [False, True, True]
    assert frame["size"].isna().tolist() == [False, True, False]
    assert frame["size"].dtype == "float64"


def test_excluded_columns_are_not_features(tmp_path: Path) -> None:
    small_frame().to_parquet(tmp_path / "d.parquet", index=False)
    spec = SPEC.model_copy(update={"exclude": ["age", "usage_gb"]})
    dataset = load_dataset(str(tmp_path / "d.parquet"), spec, None)
    assert "age" not in dataset.frame.columns
    assert "usage_gb" not in dataset.features


@pytest.mark.parametrize(
    ("labels", "positive", "expected"),
    [
        (["yes", "no", "Yes "], "yes", [1, 0, 1]),
        (["churn", "stay", "stay"], "stay", [0, 1, 1]),
        (["1", "0", "1"], 1, [1, 0, 1]),
        (["1", "0", "0"], True, [1, 0, 0]),
        (["True", "False", "True"], "true", [1, 0, 1]),
        (["0", "1", "1"], "0", [1, 0, 0]),
    ],
)
def test_labels_map_to_0_1_whatever_their_spelling(
    tmp_path: Path, labels: list[str], positive: str | int | bool, expected: list[int]
) -> None:
    rows = "\n".join(f"{i},{label}" for i, label in enumerate(labels))
    (tmp_path / "d.csv").write_text(f"x,y\n{rows}\n")
    dataset = load_dataset(
        str(tmp_path / "d.csv"), DataSpec(label="y", positive_class=positive), None
    )
    assert dataset.frame["y"].tolist() == expected


def test_parquet_integer_and_boolean_labels(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [True, False, True]}).to_parquet(
        tmp_path / "b.parquet"
    )
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1, 0, 1]}).to_parquet(tmp_path / "i.parquet")
    for name, positive in [("b", True), ("b", 1), ("i", True), ("i", "1")]:
        spec = DataSpec(label="y", positive_class=positive)
        dataset = load_dataset(str(tmp_path / f"{name}.parquet"), spec, None)
        assert dataset.frame["y"].tolist() == [1, 0, 1], (name, positive)


def write_text(text: str, name: str = "d.csv") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_text(text)
        return folder / name

    return make


def write_bytes(data: bytes, name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


BAD_INPUTS = {
    "missing file": (lambda folder: folder / "nope.csv", "data file not found"),
    "corrupt parquet": (write_bytes(b"PAR1 not really", "d.parquet"), "cannot read parquet"),
    "empty file": (write_text(""), "Empty CSV file"),
    "header only": (write_text("x,y\n"), "no rows"),
    "ragged csv": (write_text("x,y\n1,yes\n2\n3,no\n"), "Expected 2 columns, got 1"),
    "label missing": (write_text("x,z\n1,yes\n2,no\n"), "label column(s) ['y'] not found"),
    "label with NaN": (write_text("x,y\n1,yes\n2,\n3,no\n"), "has 1 missing values"),
    "one class": (write_text("x,y\n1,no\n2,no\n"), "one class only ('no' in all 2 rows)"),
    "not binary": (write_text("x,y\n1,yes\n2,no\n3,maybe\n"), "not binary: 3 distinct values"),
    "positive absent": (write_text("x,y\n1,a\n2,b\n"), "positive_class 'yes' is not a value"),
    "text feature": (write_text("x,y\nfoo,yes\nbar,no\n"), "column 'x' is not numeric"),
    "unknown format": (write_text("x,y\n", "d.json"), "unknown format '.json'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_with_a_clear_message(tmp_path: Path, case: str) -> None:
    make, message = BAD_INPUTS[case]
    with pytest.raises(BadInput) as error:
        load_dataset(str(make(tmp_path)), DataSpec(label="y"), None)
    assert str(error.value).startswith("data ")
    assert message in str(error.value)


def test_declared_columns_must_exist(tmp_path: Path) -> None:
    small_frame().drop(columns=["plan"]).to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(BadInput, match=r"categorical column\(s\) \['plan'\] not found"):
        read_table(str(tmp_path / "d.parquet"), SPEC, None)
    small_frame().to_parquet(tmp_path / "e.parquet", index=False)
    for update, message in [
        ({"row_key": "id"}, r"row key column\(s\) \['id'\] not found"),
        ({"exclude": ["agee"]}, r"excluded column\(s\) \['agee'\] not found"),
        ({"slice_column": "customer_id"}, "slice column 'customer_id' must be a feature"),
    ]:
        with pytest.raises(BadInput, match=message):
            load_dataset(str(tmp_path / "e.parquet"), SPEC.model_copy(update=update), None)


def test_row_key_must_be_unique(tmp_path: Path) -> None:
    frame = small_frame()
    frame.loc[5, "customer_id"] = frame.loc[4, "customer_id"]
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(BadInput, match="row key 'customer_id' is not unique: 1 repeated"):
        canonical_table(load_dataset(str(tmp_path / "d.parquet"), SPEC, None))


def test_reads_from_s3(store: ArtifactStore, tmp_path: Path) -> None:
    small_frame().to_csv(tmp_path / "d.csv", index=False)
    store.upload_file(tmp_path / "d.csv", "inputs/d.csv")
    dataset = load_dataset(store.uri("inputs/d.csv"), SPEC, store)
    assert len(dataset.frame) == 300
    with pytest.raises(BadInput, match="data file not found: s3://"):
        load_dataset(store.uri("inputs/other.csv"), SPEC, store)
    with pytest.raises(BadInput, match="is not the artifact bucket"):
        load_dataset("s3://another-bucket/inputs/d.csv", SPEC, store)
    with pytest.raises(BadInput, match="needs the artifact store"):
        load_dataset(store.uri("inputs/d.csv"), SPEC, None)


def test_nan_becomes_missing_whatever_the_array_offset() -> None:
    values = pa.chunked_array([pa.array([1.0, float("nan"), None, 3.0, 2.0], from_pandas=False)])
    expected = [1.0, None, None, 3.0, 2.0]
    for start in [0, 1]:  # a slice shares the buffers at an offset
        numeric = _numeric(values.slice(start), "x", "test")
        assert numeric.to_pylist() == expected[start:]
        assert numeric.null_count == 2
