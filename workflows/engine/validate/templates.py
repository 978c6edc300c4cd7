"""Rules on one template, whatever calls it (validate.go: validateTemplateType,
validateInputs, validateLeaf, validateNonLeaf, validateOutputs, validateOutputParameter,
validatePodResources, the retryPolicy and metric checks of validateTemplate/-Holder).

Each function takes the template dict and yields (relative path, message); the caller
prefixes the template's own path. Variables are checked separately (variables.py).
"""

import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

from workflows.engine.validate.arguments import LOCATIONS
from workflows.engine.validate.names import is_parameter, named_list_errors, param_name_errors
from workflows.engine.validate.problem import items, mapping, present, text

Found = Iterator[tuple[str, str]]

TYPES = (
    "container",
    "containerSet",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "data",
    "http",
    "plugin",
)
POD_TYPES = frozenset({"container", "containerSet", "script", "resource", "data"})
LEAF_TYPES = POD_TYPES | {"http", "plugin"}
TYPE_NAMES = {"containerSet": "ContainerSet", "http": "HTTP", "dag": "DAG"}
RETRY_POLICIES = frozenset({"Always", "OnError", "OnFailure", "OnTransientError", ""})
RESOURCE_ACTIONS = frozenset({"get", "create", "apply", "delete", "replace", "patch"})
_METRIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPE_CHOICES = (
    "choose one of: container, containerSet, steps, script, resource, dag, suspend, "
    "template, template ref"
)


def template_type(template: Mapping[str, Any]) -> str | None:
    """Template.GetType: the first type field set, in Argo's order."""
    for kind in (
        "container",
        "containerSet",
        "steps",
        "dag",
        "script",
        "resource",
        "data",
        "suspend",
        "http",
        "plugin",
    ):
        if template.get(kind) is not None:
            return kind
    return None


def type_name(kind: str | None) -> str:
    return TYPE_NAMES.get(str(kind), str(kind).capitalize())


def is_leaf(template: Mapping[str, Any]) -> bool:
    return template_type(template) in LEAF_TYPES


def is_pod(template: Mapping[str, Any]) -> bool:
    return template_type(template) in POD_TYPES


def type_problems(template: Mapping[str, Any]) -> Found:
    """validateTemplateType: exactly one of the template types."""
    count = sum(template.get(kind) is not None for kind in TYPES)
    if count == 0:
        yield "", f"template type unspecified. {_TYPE_CHOICES}"
    elif count > 1:
        yield "", f"multiple template types specified. {_TYPE_CHOICES}"


def retry_policy_problems(template: Mapping[str, Any]) -> Found:
    """validateTemplateHolder: a retryPolicy Argo knows."""
    strategy = template.get("retryStrategy")
    policy = text(mapping(strategy).get("retryPolicy"))
    if strategy is not None and policy not in RETRY_POLICIES:
        yield "retryStrategy.retryPolicy", f"{policy} is not a valid RetryPolicy"


def pod_resources_problems(template: Mapping[str, Any], path: str = "podResources") -> Found:
    """validatePodResources: pod-level resources are cpu, memory and hugepages-* only."""
    resources = template.get("podResources")
    if resources is None:
        return
    if template_type(template) in ("http", "plugin"):
        yield (
            path,
            f"podResources is not supported for {type_name(template_type(template))} templates",
        )
        return
    resources = mapping(resources)
    if present(resources.get("claims")):
        yield f"{path}.claims", "claims is not supported for pod-level resources"
    for kind in ("limits", "requests"):
        for name in mapping(resources.get(kind)):
            if name not in ("cpu", "memory") and not str(name).startswith("hugepages-"):
                yield (
                    f"{path}.{kind}.{name}",
                    f"{name!r} is not a valid pod-level resource, only cpu, memory and "
                    "hugepages-* are supported",
                )


def input_problems(template: Mapping[str, Any]) -> Found:
    """validateInputs: names, artifact paths, no `from`, artifact locations."""
    yield from _names_and_paths(template, "inputs")
    for index, artifact in enumerate(items(mapping(template.get("inputs")).get("artifacts"))):
        where = f"inputs.artifacts[{index}]"
        if text(artifact.get("from")):
            yield (
                f"{where}.from",
                f"inputs.artifacts.{text(artifact.get('name'))}.from not valid in inputs",
            )
        yield from ((f"{where}.{p}", m) for p, m in location_problems(artifact))


def _names_and_paths(template: Mapping[str, Any], side: str) -> Found:
    """Both sides' parameter and artifact names; an artifact path is required (and may not
    climb out of its folder) on a leaf template, and meaningless elsewhere."""
    section = mapping(template.get(side))
    for kind in ("parameters", "artifacts"):
        for index, reason in named_list_errors(items(section.get(kind)), parameters=True):
            yield f"{side}.{kind}[{index}]", reason
    leaf = is_leaf(template)
    for index, artifact in enumerate(items(section.get("artifacts"))):
        where = f"{side}.artifacts[{index}].path"
        name, path = text(artifact.get("name")), text(artifact.get("path"))
        escape = clean_path_error(name, path) if leaf else None
        if escape:
            yield where, escape
        elif path and not leaf:
            yield where, f"{side}.artifacts.{name}.path only valid in container/script templates"


def clean_path_error(name: str, path: str) -> str | None:
    """Artifact.CleanPath: a path is required and may not climb out of its directory."""
    if not path:
        return f"Artifact '{name}' did not specify a path"
    safe = ""
    if "/../" in path:
        safe = path.split("/../", 1)[0]
    elif path.endswith("/.."):
        safe = path[:-3]
    cleaned = posixpath.normpath(path)
    if safe and (not cleaned.startswith(safe + "/") or len(cleaned) <= len(safe) + 1):
        return (
            f"Artifact '{name}' attempted to use a path containing '..'. "
            "Directory traversal is not permitted"
        )
    return None


def location_problems(artifact: Mapping[str, Any]) -> Found:
    """validateArtifactLocation: a git artifact names its repo; one location at most."""
    if artifact.get("git") is not None and not text(mapping(artifact.get("git")).get("repo")):
        yield "git.repo", "git.repo is required"
    if sum(artifact.get(location) is not None for location in LOCATIONS) > 1:
        yield "", "at most one artifact location can be specified"


def non_leaf_problems(template: Mapping[str, Any]) -> Found:
    """validateNonLeaf and the timeout checks: pod-only fields on a steps/DAG template."""
    kind = type_name(template_type(template))
    if template.get("activeDeadlineSeconds") is not None:
        yield "activeDeadlineSeconds", "activeDeadlineSeconds is only valid for leaf templates"
    if text(template.get("timeout")):
        yield "timeout", f"{kind} template doesn't support timeout field"
    if text(template.get("pendingTimeout")):
        yield "pendingTimeout", f"{kind} template doesn't support pendingTimeout field"


def timeout_problems(template: Mapping[str, Any]) -> Found:
    """validateTemplate: a timeout is a duration ("30s"), never a bare number."""
    timeout = template.get("timeout")
    if is_leaf(template) and timeout is not None and re.fullmatch(r"[+-]?\d+", text(timeout)):
        yield "timeout", f"{text(template.get('name'))} has invalid duration format in timeout"


def resource_claim_problems(template: Mapping[str, Any]) -> Found:
    if present(template.get("resourceClaims")) and not is_pod(template):
        yield (
            "resourceClaims",
            f"resourceClaims is not supported for {type_name(template_type(template))} "
            "templates, which do not create a pod",
        )


def leaf_problems(template: Mapping[str, Any], defaults: Mapping[str, Any]) -> Found:
    """validateLeaf, apart from variables: mounts, images, resources, deadlines, parallelism.

    `defaults` is the spec's `templateDefaults`, which may supply the image.
    """
    container = template.get("container")
    if container is not None:
        container = mapping(container)
        mounted: dict[str, str] = {}
        yield from _mount_collisions(container, "container.", mounted)
        for index, artifact in enumerate(items(mapping(template.get("inputs")).get("artifacts"))):
            path = text(artifact.get("path"))
            if path in mounted:
                yield (
                    f"inputs.artifacts[{index}].path",
                    f"path '{path}' already mounted in {mounted[path]}",
                )
            mounted[path] = f"inputs.artifacts.{text(artifact.get('name'))}"
        if not text(container.get("image")) and not text(
            mapping(defaults.get("container")).get("image")
        ):
            yield "container.image", "container.image may not be empty"
    container_set = template.get("containerSet")
    if container_set is not None:
        yield from container_set_problems(template, mapping(container_set))
    for index, sidecar in enumerate(items(template.get("sidecars"))):
        if _reserved(text(sidecar.get("name"))):
            yield (
                f"sidecars[{index}].name",
                f"sidecars: {text(sidecar.get('name'))!r} is a reserved Argo container name",
            )
    resource = template.get("resource")
    if resource is not None:
        yield from resource_problems(template, mapping(resource))
    script = template.get("script")
    default_image = text(mapping(defaults.get("script")).get("image"))
    if script is not None and not text(mapping(script).get("image")) and not default_image:
        yield "script.image", "script.image may not be empty"
    deadline = template.get("activeDeadlineSeconds")
    if deadline is not None and not _int_or_variable(deadline, minimum=0):
        yield (
            "activeDeadlineSeconds",
            "activeDeadlineSeconds must be a positive integer > 0 or an argo variable",
        )
    if template.get("parallelism") is not None:
        yield "parallelism", "parallelism is only valid for steps and dag templates"


def _mount_collisions(owner: Mapping[str, Any], prefix: str, mounted: dict[str, str]) -> Found:
    """Two volumeMounts on one path; `mounted` (path -> what holds it) is filled in."""
    for index, mount in enumerate(items(owner.get("volumeMounts"))):
        mount_path = text(mount.get("mountPath"))
        if mount_path in mounted:
            yield (
                f"{prefix}volumeMounts[{index}].mountPath",
                f"mountPath '{mount_path}' already mounted in {mounted[mount_path]}",
            )
        mounted[mount_path] = f"{prefix}volumeMounts.{text(mount.get('name'))}"


def _int_or_variable(value: object, minimum: int) -> bool:
    """intstr.IsValidIntOrArgoVariable plus the sign check: an int, digits or `{{...}}`."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= minimum
    raw = text(value)
    if re.fullmatch(r"[+-]?\d+", raw):
        return int(raw) >= minimum
    return raw.startswith("{{") and raw.endswith("}}")


def _reserved(name: str) -> bool:
    """common.IsArgoSidecar: the controller's own container names."""
    return name in ("wait", "supervisor") or name.startswith("artifact-plugin-")


def container_set_problems(template: Mapping[str, Any], container_set: Mapping[str, Any]) -> Found:
    """ContainerSetTemplate.Validate and validateLeaf: named containers, known acyclic
    dependencies, distinct mounts, a `main` container when there are inputs or outputs."""
    containers = items(container_set.get("containers"))
    if not containers:
        yield "containerSet.containers", "containers must have at least one container"
        return
    for index, reason in named_list_errors(containers, parameters=False):
        yield f"containerSet.containers[{index}]", reason
    yield from _mount_collisions(container_set, "containerSet.", {})
    names = [text(c.get("name")) for c in containers]
    graph = {
        text(c.get("name")): [text(d) for d in c.get("dependencies") or []] for c in containers
    }
    for index, name in enumerate(names):
        for dependency in graph[name]:
            if dependency not in graph:
                yield (
                    f"containerSet.containers[{index}].dependencies",
                    f"containers.{name} dependency '{dependency}' not defined",
                )
    if _has_cycle(graph):
        yield "containerSet.containers", "containers dependency cycle detected"
    outputs = mapping(template.get("outputs"))
    io = (
        items(mapping(template.get("inputs")).get("artifacts"))
        or items(outputs.get("parameters"))
        or items(outputs.get("artifacts"))
    )
    if io and "main" not in names:
        yield (
            "containerSet.containers",
            'containerSet.containers must have a container named "main" for input or output',
        )
    for index, name in enumerate(names):
        if _reserved(name):
            yield (
                f"containerSet.containers[{index}].name",
                f"{name!r} is a reserved Argo container name",
            )


def resource_problems(template: Mapping[str, Any], resource: Mapping[str, Any]) -> Found:
    action = text(resource.get("action"))
    if action not in RESOURCE_ACTIONS:
        yield (
            "resource.action",
            "resource.action must be one of: get, create, apply, delete, replace, patch",
        )
    if action in ("delete", "get"):
        return
    manifest, manifest_from = text(resource.get("manifest")), resource.get("manifestFrom")
    if not manifest and manifest_from is None:
        yield "resource", "either resource.manifest or resource.manifestFrom must be specified"
    if manifest and manifest_from is not None:
        yield (
            "resource",
            "shouldn't have both `manifest` and `manifestFrom` specified in `Manifest` "
            "for resource template",
        )
    artifact = mapping(mapping(manifest_from).get("artifact"))
    declared = {
        text(a.get("name")) for a in items(mapping(template.get("inputs")).get("artifacts"))
    }
    if artifact and text(artifact.get("name")) not in declared:
        yield (
            "resource.manifestFrom.artifact",
            f"artifact {text(artifact.get('name'))} in `manifestFrom` refer to a "
            "non-exist artifact",
        )


def output_problems(template: Mapping[str, Any]) -> Found:
    """validateOutputs and validateOutputParameter, apart from variables."""
    yield from _names_and_paths(template, "outputs")
    outputs = mapping(template.get("outputs"))
    for index, artifact in enumerate(items(outputs.get("artifacts"))):
        yield from _global_name_problem(artifact, f"outputs.artifacts[{index}]")
    template_kind = template_type(template)
    for index, parameter in enumerate(items(outputs.get("parameters"))):
        where = f"outputs.parameters[{index}]"
        yield from output_parameter_problems(parameter, where, template_kind)
        yield from _global_name_problem(parameter, where)


def _global_name_problem(output: Mapping[str, Any], where: str) -> Found:
    global_name = text(output.get("globalName"))
    if global_name and not is_parameter(global_name):
        for reason in param_name_errors(global_name):
            yield f"{where}.globalName", reason


def output_parameter_problems(parameter: Mapping[str, Any], where: str, kind: str | None) -> Found:
    name = text(parameter.get("name"))
    value_from = parameter.get("valueFrom")
    if value_from is not None and parameter.get("value") is not None:
        yield where, f"outputs.parameters.{name} has both valueFrom and value specified, choose one"
        return
    if parameter.get("value") is not None:
        return
    if value_from is None:
        yield where, f"outputs.parameters.{name} does not have valueFrom or value specified"
        return
    source = mapping(value_from)
    sources = sum(
        bool(text(source.get(k)))
        for k in ("path", "jqFilter", "jsonPath", "parameter", "expression")
    )
    sources += source.get("supplied") is not None
    if sources == 0:
        yield (
            f"{where}.valueFrom",
            "valueFrom type unspecified. choose one of: path, jqFilter, jsonPath, parameter, "
            "raw, expression",
        )
        return
    if sources > 1:
        yield (
            f"{where}.valueFrom",
            "multiple valueFrom types specified. choose one of: path, jqFilter, jsonPath, "
            "parameter, raw",
        )
        return
    if kind in ("container", "containerSet", "script") and not text(source.get("path")):
        yield (
            f"{where}.valueFrom",
            f"outputs.parameters.{name}.path must be specified for {type_name(kind)} templates",
        )
    elif kind == "resource" and not (text(source.get("jqFilter")) or text(source.get("jsonPath"))):
        yield (
            f"{where}.valueFrom",
            f"outputs.parameters.{name} .jqFilter or jsonPath must be specified for "
            "Resource templates",
        )
    elif kind in ("dag", "steps") and not (
        text(source.get("parameter")) or text(source.get("expression"))
    ):
        yield (
            f"{where}.valueFrom",
            f"outputs.parameters.{name}.parameter or expression must be specified for "
            f"{type_name(kind)} templates",
        )


def metric_problems(metrics: object, path: str = "metrics") -> Found:
    """validateTemplate's metric checks: names and label keys as Prometheus allows
    (and no ':'), a help string, a value for the metric's kind, no realtime resourcesDuration."""
    for index, metric in enumerate(items(mapping(metrics).get("prometheus"))):
        where = f"{path}.prometheus[{index}]"
        name = text(metric.get("name"))
        if not _METRIC_NAME.fullmatch(name):
            yield (
                f"{where}.name",
                f"metric name '{name}' is invalid. Metric names must contain alphanumeric "
                "characters or '_'",
            )
        for label_index, label in enumerate(items(metric.get("labels"))):
            key = text(label.get("key"))
            if not _METRIC_NAME.fullmatch(key):
                yield (
                    f"{where}.labels[{label_index}].key",
                    f"metric label '{key}' is invalid: keys may only contain alphanumeric "
                    "characters or '_'",
                )
        if not text(metric.get("help")):
            yield (
                f"{where}.help",
                f"metric '{name}' must contain a help string under 'help: ' field",
            )
        for kind in ("gauge", "counter", "histogram"):
            body = metric.get(kind)
            if body is None:
                continue
            value = text(mapping(body).get("value"))
            if not value:
                yield f"{where}.{kind}.value", f"metric '{name}' error: missing {kind}.value"
            if (
                kind == "gauge"
                and mapping(body).get("realtime") is True
                and "resourcesDuration." in value
            ):
                yield (
                    f"{where}.gauge",
                    f"metric '{name}' error: 'resourcesDuration.*' metrics cannot be used "
                    "in real-time",
                )


def _has_cycle(graph: Mapping[str, list[str]]) -> bool:
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        state[node] = 1
        for dependency in graph.get(node, []):
            if state.get(dependency) == 1 or (
                dependency not in state and dependency in graph and visit(dependency)
            ):
                return True
        state[node] = 2
        return False

    return any(node not in state and visit(node) for node in graph)
