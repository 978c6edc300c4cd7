"""Unit tests run in this one process: no SeaweedFS, no step, CLI or server process. The
fixtures below fail a test that reaches for one, naming where it belongs."""

import subprocess
from typing import Any, NoReturn

import pytest

INTEGRATION = "belongs in tests/integration (unit tests run in one process, without SeaweedFS)"


@pytest.fixture(scope="session")
def s3_server() -> NoReturn:
    pytest.fail(f"this test uses SeaweedFS: it {INTEGRATION}")


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> NoReturn:
        pytest.fail(f"this test starts a process ({args!r}): it {INTEGRATION}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
