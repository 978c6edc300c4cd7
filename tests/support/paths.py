"""Where the repository's files are, for every test: no test counts folders up from itself."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "config" / "local.yaml"
CLUSTER = ROOT / "config" / "cluster.yaml"
SUITE_FILE = ROOT / "config" / "expectations" / "default.json"
"""The GX expectation suite the shipped configs use."""
