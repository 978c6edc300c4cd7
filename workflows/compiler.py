"""Hera objects -> Argo YAML files: the only form either engine ever executes."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflows.config import LoadedConfig
from workflows.cron import build_cron
from workflows.pipeline import build_template, build_workflow

TEMPLATE_FILE = "workflow-template.yaml"
WORKFLOW_FILE = "workflow.yaml"
CRON_FILE = "cron-workflow.yaml"


@dataclass(frozen=True)
class CompiledManifests:
    """File name -> manifest dict, in the order they are written."""

    template: dict[str, Any]
    workflow: dict[str, Any]
    cron: dict[str, Any]

    def files(self) -> dict[str, dict[str, Any]]:
        return {
            TEMPLATE_FILE: self.template,
            WORKFLOW_FILE: self.workflow,
            CRON_FILE: self.cron,
        }


def compile_manifests(config: LoadedConfig) -> CompiledManifests:
    return CompiledManifests(
        template=build_template(config).to_dict(),
        workflow=build_workflow(config).to_dict(),
        cron=build_cron(config).to_dict(),
    )


def render(manifest: dict[str, Any]) -> str:
    """Stable YAML (keys in Hera's order, wide lines) so committed files diff cleanly."""
    return yaml.safe_dump(manifest, sort_keys=False, width=120, default_flow_style=False)


def write_manifests(manifests: CompiledManifests, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, manifest in manifests.files().items():
        path = out_dir / name
        path.write_text(render(manifest))
        written.append(path)
    return written


def load_manifest(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected one YAML mapping (an Argo manifest)")
    return loaded
