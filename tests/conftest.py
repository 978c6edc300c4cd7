"""Shared fixtures: one real SeaweedFS server per test session, a fresh bucket per test.

Only integration and end-to-end tests use them; tests/unit/conftest.py refuses them."""

import signal
from collections.abc import Iterator

import pytest

from steps.core.store import ArtifactStore
from tests.support.s3 import fresh_bucket, store_env
from workflows.s3server import EmbeddedS3


def pytest_configure(config: pytest.Config) -> None:
    """Tests press Ctrl-C on the processes they start (SIGINT). Started in the background
    (`cmd &`, nohup), pytest inherits SIGINT ignored, and so would those processes: Python
    then never raises KeyboardInterrupt in them. A handler of our own is reset to the default
    in every child, as a terminal's processes have it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A running `weed mini` on loopback (`.endpoint`, `.access_key`, `.secret_key`)."""
    with EmbeddedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def store(s3_server: EmbeddedS3) -> Iterator[ArtifactStore]:
    """A bucket of this test's own."""
    with fresh_bucket(s3_server) as artifact_store:
        yield artifact_store


@pytest.fixture
def s3_env(s3_server: EmbeddedS3, store: ArtifactStore) -> dict[str, str]:
    """The environment a `python -m steps ...` subprocess needs to reach `store`'s bucket."""
    return store_env(s3_server, store)
