"""`mlpipe argo submit`: run any Argo Workflow YAML on this machine, as `argo submit --watch`
would on a cluster.

The file's Workflow is submitted as the Argo server would take it: `--entrypoint` and
`-p NAME=VALUE` / `--parameter-file` override its spec (a parameter it does not declare is
added, as `argo submit -p` does); (Cluster)WorkflowTemplates, ConfigMaps and Secrets come
from `--templates DIR` (every YAML or JSON file below it, as `kubectl apply -f DIR` would
create them) and from the file itself. The local engine then runs it against the embedded
S3 server as the artifact repository, and the exit code says how it ended: 0 Succeeded,
1 Failed or Error, 2 refused before running (Argo's rules, or what the engine cannot run
faithfully, both named) or bad input, 3 storage.
"""

import base64
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.text import Text

from steps.core.errors import BadInput, StepError
from workflows.config import LoadedConfig
from workflows.console import ConsoleView, locations_table, summary_table
from workflows.engine import EngineContext, ManifestError, RunResult, check_workflow, run_workflow
from workflows.local_run import local_storage
from workflows.run_record import save_record

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
TEMPLATE_KINDS = ("WorkflowTemplate", "ClusterWorkflowTemplate")
RUNS_FOLDER = "argo"
"""Under engine.workdir: one folder per submitted workflow."""


class SubmitError(StepError):
    """A file, parameter or manifest `mlpipe argo submit` cannot take (exit 2)."""

    exit_code = BadInput.exit_code


@dataclass
class Library:
    """What the cluster would already hold: templates, ConfigMaps and Secrets by name."""

    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, document: Mapping[str, Any], origin: str) -> None:
        kind = document.get("kind")
        name = str((document.get("metadata") or {}).get("name") or "")
        if kind in TEMPLATE_KINDS:
            key = f"cluster:{name}" if kind == "ClusterWorkflowTemplate" else name
            self.templates[key] = dict(document)
        elif kind == "ConfigMap":
            self.config_maps[name] = {k: str(v) for k, v in (document.get("data") or {}).items()}
        elif kind == "Secret":
            self.secrets[name] = _secret_data(document, origin)


@dataclass(frozen=True)
class Submission:
    workflow: dict[str, Any]
    library: Library
    source: str


def read_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML (or JSON) documents of one file, mappings only."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SubmitError(f"{path}: cannot read: {error.strerror}") from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise SubmitError(f"{path}: not valid YAML: {error}") from None
    return [document for document in documents if isinstance(document, dict)]


def _files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        raise SubmitError(f"--templates {folder}: not a folder")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in MANIFEST_SUFFIXES:
            yield path


def load_submission(
    file: Path,
    templates: Path | None = None,
    entrypoint: str | None = None,
    parameters: Sequence[str] = (),
    parameter_file: Path | None = None,
) -> Submission:
    """The Workflow of `file` with the overrides applied, and the library it may use."""
    library = Library()
    if templates is not None:
        for path in _files(templates):
            for document in read_documents(path):
                library.add(document, str(path))
    documents = read_documents(file)
    workflows = [d for d in documents if d.get("kind") == "Workflow"]
    for document in documents:
        library.add(document, str(file))
    if len(workflows) != 1:
        raise SubmitError(f"{file}: holds {len(workflows)} Workflow documents; submit one")
    workflow = workflows[0]
    spec = workflow.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise SubmitError(f"{file}: spec is not a mapping")
    if entrypoint is not None:
        spec["entrypoint"] = entrypoint
    overrides = _parameter_file(parameter_file) if parameter_file else {}
    for text in parameters:
        name, equals, value = text.partition("=")
        if not equals or not name:
            raise SubmitError(f"-p {text!r}: expected NAME=VALUE")
        overrides[name] = value
    if overrides:
        _override_parameters(spec, overrides)
    return Submission(workflow, library, str(file))


def _parameter_file(path: Path) -> dict[str, str]:
    documents = read_documents(path)
    if len(documents) != 1:
        raise SubmitError(f"--parameter-file {path}: expected one mapping of name: value")
    return {str(name): _parameter_text(value) for name, value in documents[0].items()}


def _parameter_text(value: object) -> str:
    """As `argo submit --parameter-file` takes values: scalars as text, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _override_parameters(spec: dict[str, Any], overrides: Mapping[str, str]) -> None:
    arguments = spec.setdefault("arguments", {})
    declared = arguments.setdefault("parameters", [])
    remaining = dict(overrides)
    for parameter in declared:
        if isinstance(parameter, dict) and parameter.get("name") in remaining:
            parameter["value"] = remaining.pop(str(parameter["name"]))
            parameter.pop("valueFrom", None)
    declared += [{"name": name, "value": value} for name, value in remaining.items()]


def _secret_data(document: Mapping[str, Any], origin: str) -> dict[str, str]:
    data = {str(k): str(v) for k, v in (document.get("stringData") or {}).items()}
    for key, value in (document.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(value)).decode()
        except ValueError:
            raise SubmitError(f"{origin}: Secret data {key!r} is not base64") from None
    return data


def check(config: LoadedConfig, submission: Submission) -> None:
    """`--dry-run`: Argo's rules, then what the engine can run here; raises ManifestError."""
    library = submission.library
    check_workflow(
        submission.workflow,
        library.templates,
        config_maps=library.config_maps,
        filesystem=config.pipeline.engine.filesystem,
    )


def submit(config: LoadedConfig, submission: Submission, console: Console) -> RunResult:
    """Run the submission with the embedded (or configured) S3 server; print its progress
    and summary. Raises ManifestError when it is refused before running."""
    pipeline = config.pipeline
    library = submission.library
    workdir = pipeline.engine.workdir / RUNS_FOLDER
    with local_storage(pipeline, dict(os.environ)) as storage:
        context = EngineContext(
            store=storage.store,
            key_format=pipeline.storage.key_format,
            workdir=workdir,
            parallelism=max(pipeline.engine.parallelism, os.cpu_count() or 1),
            env=dict(os.environ),
            secrets=library.secrets,
            config_maps=library.config_maps,
            filesystem=pipeline.engine.filesystem,
        )
        with ConsoleView(console) as view:
            result = run_workflow(submission.workflow, library.templates, context, view)
    save_record(workdir, result)
    console.print(summary_table(result))
    console.print(locations_table(result))
    if result.succeeded:
        console.print(Text.assemble(("Succeeded", "bold green"), f" {result.name}"))
    else:
        console.print(Text.assemble((result.phase.value, "bold red"), ": ", result.message))
    return result


__all__ = ["ManifestError", "Submission", "SubmitError", "check", "load_submission", "submit"]
