"""Reading the user's data: the DataSpec applied, and every kind of bad file refused clearly."""

from pathlib import Path

import pandas as pd
import pytest

from steps.core.errors import BadInput
from steps.core.store import ArtifactStore
from steps.data.dataset import load_dataset
from steps.data.synth import data_spec, generate

SPEC = data_spec()


def small_frame() -> pd.DataFrame:
    return generate(300, seed=2)


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
