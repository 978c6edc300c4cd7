"""Argo v4's validation rules, ported from `workflow/validate/validate.go` (v4.1.2).

A separate layer from the engine's execution: it reads manifests as plain dicts, judges
them as an Argo server or controller would, and reports every problem with its JSON path.
`mlpipe lint` reports them; the local engine refuses a manifest that breaks one before it
applies its own, narrower limits (engine/manifest.py).
"""

from collections.abc import Iterable, Mapping
from typing import Any

from workflows.engine.validate.problem import Document, Problem
from workflows.engine.validate.workflow import Library, Options, validate_document

__all__ = [
    "Document",
    "Library",
    "Options",
    "Problem",
    "validate_document",
    "validate_documents",
    "workflow_problems",
]


def validate_documents(documents: Iterable[Document], *, lint: bool = True) -> list[Problem]:
    """Each manifest judged with the others as its WorkflowTemplate library (`argo lint`)."""
    documents = list(documents)
    library = Library(documents)
    problems: list[Problem] = []
    for document in documents:
        problems += validate_document(document, library, Options(lint=lint))
    return list(dict.fromkeys(problems))


def workflow_problems(
    workflow: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]
) -> list[Problem]:
    """A Workflow as `argo submit` has the server judge it (templates: WorkflowTemplates by
    name, the ones it references)."""
    library = Library(Document(template) for template in templates.values())
    return validate_document(Document(workflow), library, Options())
