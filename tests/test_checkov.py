"""checkov, the infrastructure-as-code scanner, on every manifest the project writes: the
compiled Argo manifests (both configs), what `mlpipe install` writes and what `mlpipe deploy
render` writes. 0 failed checks. checkov runs from its own venv (`make checkov`), as its
pins conflict with the project's lock."""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.test_install import mlpipe

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def write(*args: str) -> None:
    result = mlpipe(*args)
    assert result.returncode == 0, result.stderr


def checkov(folder: Path) -> list[dict[str, Any]]:
    """checkov's report per framework of one folder."""
    assert CHECKOV.exists(), f"{CHECKOV} missing: run `make checkov`"
    result = subprocess.run(
        [
            *(str(CHECKOV), "-d", str(folder), "--framework", "kubernetes", "argo_workflows"),
            *("--output", "json", "--quiet", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def test_every_manifest_the_project_writes_passes_checkov(tmp_path: Path) -> None:
    folders = {}
    for config in ("local", "cluster"):
        folders[f"compiled-{config}"] = tmp_path / f"compiled-{config}"
        write(
            "compile",
            "--config",
            f"config/{config}.yaml",
            "--out",
            str(folders[f"compiled-{config}"]),
        )
    folders["installed"] = tmp_path / "installed"
    write("install", "--config", "config/cluster.yaml", "--out", str(folders["installed"]))
    folders["rendered"] = tmp_path / "rendered"
    write(
        "deploy",
        "render",
        "--config",
        "config/cluster.yaml",
        "--out",
        str(folders["rendered"]),
        "--digest",
        "a" * 64,
        "--stable-digest",
        "b" * 64,
    )
    for name, folder in folders.items():
        reports = checkov(folder)
        failed = [
            f"{check['check_id']} {check['resource']} ({check['file_path']})"
            for report in reports
            for check in report.get("results", {}).get("failed_checks", [])
        ]
        passed = sum(report.get("summary", {}).get("passed", 0) for report in reports)
        assert failed == [], name
        assert passed > 0, f"{name}: checkov checked nothing"
    argo = {r["check_type"] for r in checkov(folders["compiled-cluster"]) if r.get("summary")}
    assert "argo_workflows" in argo, "the Argo checks (CKV_ARGO_*) ran on the compiled manifests"
