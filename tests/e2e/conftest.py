"""What the end-to-end tests share."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.deploy.local import stop_server


@pytest.fixture
def serving_dir(tmp_path: Path) -> Iterator[Path]:
    """Where deploy's detached stable model server keeps its state; stopped after the test."""
    yield tmp_path / "serving"
    stop_server(tmp_path / "serving")
