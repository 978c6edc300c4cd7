"""`mlpipe lint FILE|DIR ...`: judge Argo manifests offline, as a cluster would.

Every Workflow, WorkflowTemplate, ClusterWorkflowTemplate and CronWorkflow found in the
given files (YAML, several documents each; directories searched for `*.yaml`/`*.yml`) is
checked against Argo v4's strict JSON schema and then Argo's own validation rules
(workflows/engine/validate/), `templateRef`s resolved from the other manifests given. Other
Kubernetes objects in the same files are skipped. One more check Argo does not make: a
DAG task or step passing a parameter or artifact its template does not declare (Argo drops
it silently; argo#5173).

Exit codes: 0 clean, 1 problems found, 2 unreadable input (a missing file, bad YAML, or
no Argo manifest at all).
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflows.argo_schema import schema_problems
from workflows.engine.validate import Document, Library, Problem, validate_documents
from workflows.engine.validate.problem import items, mapping, text
from workflows.engine.validate.workflow import WORKFLOW_KINDS, find_template

ARGO_API = "argoproj.io/v1alpha1"
CLEAN, PROBLEMS, UNREADABLE = 0, 1, 2
YAML_SUFFIXES = (".yaml", ".yml")


class UnreadableInput(Exception):
    """A path that is not there, not YAML, or holds no Argo manifest; exit code 2."""


@dataclass(frozen=True)
class LintReport:
    documents: tuple[Document, ...]
    problems: tuple[Problem, ...]

    @property
    def exit_code(self) -> int:
        return PROBLEMS if self.problems else CLEAN


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each file given, and every YAML file under each directory given."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise UnreadableInput(f"{path}: no such file or directory")
    return files


def load_documents(files: Iterable[Path]) -> list[Document]:
    """The Argo workflow manifests in these files, each tagged with its file."""
    documents = []
    for file in files:
        try:
            loaded = list(yaml.safe_load_all(file.read_text()))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            reason = str(error).replace("\n", " ")
            raise UnreadableInput(f"{file}: cannot read YAML: {reason}") from None
        for manifest in loaded:
            if not isinstance(manifest, dict):
                continue
            if manifest.get("apiVersion") == ARGO_API and manifest.get("kind") in WORKFLOW_KINDS:
                documents.append(Document(manifest, str(file)))
    return documents


def lint_documents(documents: Sequence[Document]) -> list[Problem]:
    """Schema problems, then Argo's rules, then arguments Argo would silently drop."""
    problems = [
        Problem(document.source, path, message, document.origin)
        for document in documents
        for path, message in schema_problems(document.manifest)
    ]
    problems += validate_documents(documents, lint=True)
    problems += undeclared_arguments(documents)
    return list(dict.fromkeys(problems))


def lint_paths(paths: Sequence[Path]) -> LintReport:
    """Raises UnreadableInput; problems are in the report."""
    documents = load_documents(yaml_files(paths))
    if not documents:
        names = ", ".join(str(path) for path in paths)
        raise UnreadableInput(f"{names}: no Argo Workflow, WorkflowTemplate or CronWorkflow found")
    return LintReport(tuple(documents), tuple(lint_documents(documents)))


def undeclared_arguments(documents: Sequence[Document]) -> Iterator[Problem]:
    """Arguments of a task or step that name no input of the template it runs."""
    library = Library(documents)
    for document in documents:
        for index, template in enumerate(items(document.spec.get("templates"))):
            path = f"{document.spec_path}.templates[{index}]"
            for call_path, call in _calls(template, path):
                target = _target(call, document, library)
                if target is None:
                    continue
                inputs = mapping(target.get("inputs"))
                arguments = mapping(call.get("arguments"))
                for kind in ("parameters", "artifacts"):
                    declared = {text(entry.get("name")) for entry in items(inputs.get(kind))}
                    for position, argument in enumerate(items(arguments.get(kind))):
                        name = text(argument.get("name"))
                        if name and name not in declared:
                            yield Problem(
                                document.source,
                                f"{call_path}.arguments.{kind}[{position}]",
                                f"template {text(target.get('name'))!r} has no input {kind[:-1]} "
                                f"{name!r} (declared: {', '.join(sorted(declared)) or 'none'}); "
                                "Argo would drop it silently",
                                document.origin,
                            )


def _calls(template: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for index, task in enumerate(items(mapping(template.get("dag")).get("tasks"))):
        yield f"{path}.dag.tasks[{index}]", task
    steps = template.get("steps")
    for group_index, group in enumerate(steps if isinstance(steps, list) else []):
        for step_index, step in enumerate(items(group)):
            yield f"{path}.steps[{group_index}][{step_index}]", step


def _target(
    call: Mapping[str, Any], document: Document, library: Library
) -> Mapping[str, Any] | None:
    reference = call.get("templateRef")
    if reference is not None:
        ref = mapping(reference)
        owner = library.find(
            text(ref.get("name")), ref.get("clusterScope") is True, document.origin
        )
        located = find_template(owner, text(ref.get("template"))) if owner else None
    else:
        located = find_template(document, text(call.get("template")))
    return located.template if located else None


def report_lines(report: LintReport) -> list[str]:
    """One line per problem: file, manifest, JSON path and reason."""
    return [f"{problem.origin}: {problem}" for problem in report.problems]
