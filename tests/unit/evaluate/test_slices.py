"""Slice definitions: categories, numeric bins and crosses cut the right rows; a bad slices
file names the file and the key."""

from pathlib import Path

import pandas as pd
import pytest

from steps.core.errors import BadInput
from steps.core.specs import EvaluateSpec, SliceAxis, SliceGroup
from steps.data.dataset import FeatureKind
from steps.data.features import Feature, FeatureSchema
from steps.evaluate.slices import group_codes, joined, slice_count, slices_of
from workflows.config import ConfigError, load_config

SCHEMA = FeatureSchema(
    features=[
        Feature(name="region", kind=FeatureKind.CATEGORICAL, categories=["east", "west"]),
        Feature(name="tenure", kind=FeatureKind.NUMERIC),
    ]
)
FRAME = pd.DataFrame(
    {
        "region": pd.Series(["east", "west", None, "east", "north", "west"], dtype=object),
        "tenure": [1.0, 12.0, 30.0, None, 6.0, 5.9],
    }
)


def cut(*axes: SliceAxis) -> dict[str, list[int]]:
    """The slices of FRAME, coded in batches of two rows and of all six: the same either way."""
    groups = [SliceGroup(by=list(axes))]
    whole = group_codes(FRAME, SCHEMA, groups)
    batched = joined([group_codes(FRAME.iloc[i : i + 2], SCHEMA, groups) for i in (0, 2, 4)])
    slices = list(slices_of(whole))
    assert [(s.name, s.rows.tolist()) for s in slices_of(batched)] == [
        (s.name, s.rows.tolist()) for s in slices
    ]
    assert slice_count(whole) == len(slices)
    return {piece.name: piece.rows.tolist() for piece in slices}


def test_categories_bins_and_crosses_cut_the_right_rows() -> None:
    # "north" is a category the model never saw: it is encoded as missing, and sliced so.
    assert cut(SliceAxis(column="region")) == {
        "region=east": [0, 3],
        "region=west": [1, 5],
        "region=missing": [2, 4],
    }
    # Bins are [low, high): 6.0 falls in the second, 5.9 in the first.
    assert cut(SliceAxis(column="tenure", bins=[6, 24])) == {
        "tenure<6": [0, 5],
        "6<=tenure<24": [1, 4],
        "tenure>=24": [2],
        "tenure=missing": [3],
    }
    assert cut(SliceAxis(column="region"), SliceAxis(column="tenure", bins=[6])) == {
        "region=east & tenure<6": [0],
        "region=east & tenure=missing": [3],
        "region=west & tenure<6": [5],
        "region=west & tenure>=6": [1],
        "region=missing & tenure>=6": [2, 4],
    }


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        (SliceAxis(column="plan"), r"slices\[0\]\.by\[0\]\.column: 'plan' is not a model feature"),
        (SliceAxis(column="tenure"), r"slices\[0\]\.by\[0\]\.bins: numeric column 'tenure'"),
        (SliceAxis(column="region", bins=[1]), r"slices\[0\]\.by\[0\]\.bins: 'region' is categ"),
    ],
)
def test_a_slice_the_data_cannot_have_is_bad_input(axis: SliceAxis, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        group_codes(FRAME, SCHEMA, [SliceGroup(by=[axis])])


def config_with_slices(tmp_path: Path, slices: str, evaluate: str = "") -> Path:
    (tmp_path / "slices.yaml").write_text(slices)
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"evaluate:\n  slices_file: slices.yaml\n{evaluate}")
    return path


def test_the_slices_file_joins_the_evaluate_spec(tmp_path: Path) -> None:
    path = config_with_slices(
        tmp_path, "min_slice_rows: 50\nslices:\n  - by: [{column: region}]\n", "  min_auc: 0.8\n"
    )
    spec = load_config(path).spec(EvaluateSpec)
    assert spec.min_slice_rows == 50 and spec.min_auc == 0.8
    assert spec.slices == [SliceGroup(by=[SliceAxis(column="region")])]


@pytest.mark.parametrize(
    ("slices", "message"),
    [
        (
            "slices:\n  - by: [{column: tenure, bins: [24, 6]}]\n",
            "slices.yaml: key 'slices.0.by.0.bins': Value error, bin edges must be strictly "
            "increasing, got [24.0, 6.0]",
        ),
        (
            "slices:\n  - by: [{column: a}, {column: b}, {column: c}]\n",
            "slices.yaml: key 'slices.0.by': List should have at most 2 items",
        ),
        (
            "checks:\n  - {name: x, kind: invariance, feature: tenure}\n",
            "slices.yaml: key 'checks.0': Value error, give exactly one of `shift`",
        ),
        ("slice:\n  - by: [{column: region}]\n", "slices.yaml: expected a mapping with keys"),
        ("slices: [\n", "slices.yaml: not valid YAML"),
    ],
)
def test_a_bad_slices_file_names_the_file_and_key(
    tmp_path: Path, slices: str, message: str
) -> None:
    config = load_config(config_with_slices(tmp_path, slices))
    with pytest.raises(ConfigError) as caught:
        config.spec(EvaluateSpec)
    assert str(tmp_path / "slices.yaml") in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_slices_file_names_the_config_key(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("evaluate:\n  slices_file: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: key 'evaluate.slices_file': cannot"):
        load_config(path).spec(EvaluateSpec)


def test_a_key_set_in_both_places_is_refused(tmp_path: Path) -> None:
    path = config_with_slices(tmp_path, "min_slice_rows: 50\n", "  min_slice_rows: 60\n")
    with pytest.raises(ConfigError, match=r"key 'evaluate\.min_slice_rows' is also set in"):
        load_config(path).spec(EvaluateSpec)
