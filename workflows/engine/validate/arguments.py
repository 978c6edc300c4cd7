"""Arguments of a workflow, a DAG task or a step (validate.go: validateArguments,
validateArgumentsFieldNames, validateArgumentsValues, validateDAGTaskArgumentDependency),
and what a call must supply to the template it runs (common.ProcessArgs).
"""

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from workflows.engine.validate.names import named_list_errors
from workflows.engine.validate.problem import items, mapping, present, text

LOCATIONS = ("s3", "git", "http", "artifactory", "hdfs", "raw", "oss", "gcs", "azure", "plugin")


def has_location(artifact: Mapping[str, Any]) -> bool:
    """ArtifactLocation.HasLocationOrKey, read as: one of the locations is filled in."""
    return any(present(artifact.get(location)) for location in LOCATIONS)


def argument_problems(
    arguments: Mapping[str, Any], path: str, *, allow_empty: bool
) -> Iterator[tuple[str, str]]:
    """(path, message) per problem: names, values, `valueFrom` sources, enums, artifacts."""
    parameters = items(arguments.get("parameters"))
    artifacts = items(arguments.get("artifacts"))
    for kind, entries in (("parameters", parameters), ("artifacts", artifacts)):
        for index, reason in named_list_errors(entries, parameters=True):
            yield f"{path}.{kind}[{index}]", reason
    for index, parameter in enumerate(parameters):
        where = f"{path}.parameters[{index}]"
        name = text(parameter.get("name"))
        value_from = parameter.get("valueFrom")
        if value_from is None and parameter.get("value") is None and not allow_empty:
            yield where, f"{name}.value or {name}.valueFrom is required"
        if value_from is not None:
            source = mapping(value_from)
            allowed = (
                present(source.get("configMapKeyRef"))
                or bool(text(source.get("event")))
                or source.get("supplied") is not None
            )
            forbidden = ("path", "jsonPath", "parameter", "expression")
            if not allowed or any(text(source.get(key)) for key in forbidden):
                yield (
                    f"{where}.valueFrom",
                    f"{name}.valueFrom only allows: default, configMapKeyRef and supplied",
                )
        enum = parameter.get("enum")
        if enum is not None:
            if not enum:
                yield f"{where}.enum", f"{name}.enum should contain at least one value"
            elif parameter.get("value") is None:
                if allow_empty:
                    # Argo returns here: the parameters after this one go unchecked.
                    return
                yield where, f"{name}.value is required"
            elif text(parameter.get("value")) not in [text(v) for v in enum]:
                yield f"{where}.value", f"{name}.value should be present in {name}.enum list"
    for index, artifact in enumerate(artifacts):
        where = f"{path}.artifacts[{index}]"
        name = text(artifact.get("name"))
        from_ = text(artifact.get("from"))
        if not from_ and not has_location(artifact):
            yield where, f"{name}.from, artifact location, or key is required"
        if from_ and text(artifact.get("fromExpression")):
            yield where, f"{name} shouldn't have both `from` and `fromExpression` in Artifact"


def dependency_problems(
    arguments: Mapping[str, Any], ancestry: Iterable[str], path: str
) -> Iterator[tuple[str, str]]:
    """validateDAGTaskArgumentDependency: a value that starts with `{{tasks.X` needs X upstream."""
    upstream = set(ancestry)
    for kind, key in (("parameters", "value"), ("artifacts", "from")):
        for index, entry in enumerate(items(arguments.get(kind))):
            value = text(entry.get(key))
            if not value.startswith("{{tasks."):
                continue
            task = value.split(".")[1]
            if task not in upstream:
                noun = "parameter" if kind == "parameters" else "artifact"
                yield (
                    f"{path}.{kind}[{index}].{key}",
                    f"missing dependency '{task}' for {noun} '{text(entry.get('name'))}'",
                )


def supply_problems(
    template: Mapping[str, Any], arguments: Mapping[str, Any] | None
) -> Iterator[str]:
    """ProcessArgs with real arguments (None: Argo's FakeArguments, which supply everything):
    each input parameter ends with a value, each required input artifact is given."""
    if arguments is None:
        return
    inputs = mapping(template.get("inputs"))
    given = {text(p.get("name")): p for p in items(arguments.get("parameters"))}
    given_artifacts = {text(a.get("name")) for a in items(arguments.get("artifacts"))}
    for artifact in items(inputs.get("artifacts")):
        required = artifact.get("optional") is not True and not has_location(artifact)
        if required and text(artifact.get("name")) not in given_artifacts:
            yield f"inputs.artifacts.{text(artifact.get('name'))} was not supplied"
    for parameter in items(inputs.get("parameters")):
        value, value_from = parameter.get("value"), parameter.get("valueFrom")
        if value is None:
            value = parameter.get("default")
        argument = given.get(text(parameter.get("name")))
        if argument is not None:
            if argument.get("value") is not None:
                value, value_from = argument.get("value"), None
            else:
                value, value_from = None, argument.get("valueFrom")
        if value is None and value_from is None:
            yield f"inputs.parameters.{text(parameter.get('name'))} had no value"
