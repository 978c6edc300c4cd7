"""Argo's naming rules (validate.go: validateWorkflowFieldNames, isValidParamOrArtifactName,
isValidWorkflowFieldName, and the object-name limits of Workflow/WorkflowTemplate/CronWorkflow).

Templates, DAG tasks and steps share the field-name rule; parameters and artifacts have their
own, looser one. Every list of named things must name each item once.
"""

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from workflows.engine.validate.problem import text

MAX_OBJECT_NAME = 63
"""Kubernetes label values hold at most 63 characters, and Argo labels pods with the name."""
MAX_CRON_NAME = 52
"""A CronWorkflow's runs are named `<cron>-<unix time>`: 52 + 11 characters fit in 63."""
MAX_FIELD_NAME = 128

_FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_PARAM_OR_ARTIFACT_NAME = re.compile(r"[-a-zA-Z0-9_]+")
PARAMETER_REFERENCE = re.compile(r"\{\{[-a-zA-Z0-9]+(\.[-a-zA-Z0-9_]+)*\}\}")
"""validate.go's paramRegex: a name that is itself a variable is only checked at run time."""

FIELD_NAME_ERROR = (
    "name must consist of alpha-numeric characters or '-', and must start with an "
    "alpha-numeric character (e.g. My-name1-2, 123-NAME)"
)
PARAM_NAME_ERROR = (
    "Parameter/Artifact name must consist of alpha-numeric characters, '_' or '-' "
    "e.g. my_param_1, MY-PARAM-1"
)


def field_name_errors(name: str) -> list[str]:
    """isValidWorkflowFieldName: templates, tasks, steps."""
    errors = []
    if len(name) > MAX_FIELD_NAME:
        errors.append(f"must be no more than {MAX_FIELD_NAME} characters")
    if not _FIELD_NAME.fullmatch(name):
        errors.append(FIELD_NAME_ERROR)
    return errors


def param_name_errors(name: str) -> list[str]:
    """isValidParamOrArtifactName: parameters, artifacts, globalName."""
    return [] if _PARAM_OR_ARTIFACT_NAME.fullmatch(name) else [PARAM_NAME_ERROR]


def is_parameter(name: str) -> bool:
    return PARAMETER_REFERENCE.search(name) is not None


def named_list_errors(
    entries: Sequence[Mapping[str, Any]], *, parameters: bool
) -> Iterator[tuple[int, str]]:
    """validateWorkflowFieldNames: (index, reason) for each entry without a valid, unique name."""
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = text(entry.get("name"))
        if not name:
            yield index, "name is required"
            continue
        errors = param_name_errors(name) if parameters else field_name_errors(name)
        if errors:
            yield index, f"name: '{name}' is invalid: {';'.join(errors)}"
            continue
        if name in seen:
            yield index, f"name '{name}' is not unique"
        seen.add(name)


def object_name_error(kind: str, name: str) -> str | None:
    """Workflow()/WorkflowTemplate()/CronWorkflow(): the object name's length limit."""
    limit = MAX_CRON_NAME if kind == "CronWorkflow" else MAX_OBJECT_NAME
    if len(name) <= limit:
        return None
    label = {
        "Workflow": "workflow",
        "WorkflowTemplate": "workflow template",
        "ClusterWorkflowTemplate": "cluster workflow template",
        "CronWorkflow": "cron workflow",
    }.get(kind, kind)
    return (
        f"{label} name {name!r} must not be more than {limit} characters long "
        f"(currently {len(name)})"
    )
