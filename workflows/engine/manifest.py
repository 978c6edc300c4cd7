"""From manifest dicts to a checked plan: everything is validated before anything runs.

A Workflow either carries its own spec or names a WorkflowTemplate (`workflowTemplateRef`),
whose spec it then overrides field by field (arguments by parameter name), as Argo merges
them. DAG tasks may use `templateRef` to run a template of another WorkflowTemplate. Every
manifest involved is checked strictly (model.py), then the structure (references, cycles,
volumes, paths, secrets) and every `{{...}}` variable (scopes.py) of each reachable template.
"""

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from workflows.engine import scopes
from workflows.engine.errors import ManifestError
from workflows.engine.expressions import (
    Depends,
    dependencies_expression,
    parse_depends,
    referenced_tasks,
)
from workflows.engine.model import (
    DagTask,
    Template,
    WorkflowManifest,
    WorkflowSpec,
    WorkflowTemplateManifest,
    parse,
)
from workflows.engine.variables import has_tags
from workflows.engine.workspace import is_under

OWN_SCOPE = ""
"""Template scope of the workflow's own (or merged) templates; others are WorkflowTemplate names."""
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class TemplateEntry:
    """A template and where it lives, so nested references and messages resolve correctly."""

    scope: str
    source: str
    index: int
    template: Template

    @property
    def where(self) -> str:
        return f"{self.source}: spec.templates[{self.index}] ({self.template.name})"


@dataclass(frozen=True)
class WorkflowPlan:
    """A Workflow ready to run: merged spec, resolved templates, checked references."""

    source: str
    name: str | None
    generate_name: str | None
    namespace: str
    arguments: Mapping[str, str]
    entrypoint: TemplateEntry
    on_exit: TemplateEntry | None
    parallelism: int | None
    active_deadline_seconds: int | None
    templates: Mapping[tuple[str, str], TemplateEntry]
    depends: Mapping[tuple[str, str, str], Depends]
    """(scope, DAG template name, task name) -> parsed depends/dependencies."""

    def resolve(self, scope: str, task: DagTask) -> TemplateEntry:
        if task.template_ref is not None:
            return self.templates[(task.template_ref.name, task.template_ref.template)]
        return self.templates[(scope, str(task.template))]

    def task_depends(self, entry: TemplateEntry, task: str) -> Depends | None:
        return self.depends.get((entry.scope, entry.template.name, task))


def load_plan(
    workflow: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> WorkflowPlan:
    """Check a Workflow (and the WorkflowTemplates it uses) and resolve it into a plan.

    `secrets` (name -> key -> value), when given, must hold every secretKeyRef the
    reachable templates use. Raises ManifestError (or its UnsupportedField) on any problem.
    """
    source = _source("Workflow", workflow)
    manifest = parse(WorkflowManifest, workflow, source)
    meta = manifest.metadata
    if not meta.name and not meta.generate_name:
        raise ManifestError(f"{source}: metadata needs name or generateName")
    loader = _TemplateLoader(templates)
    spec, own_source = manifest.spec, source
    if spec.workflow_template_ref is not None:
        name = spec.workflow_template_ref.name
        referenced = loader.load(name, f"{source}: spec.workflowTemplateRef")
        spec, own_source = _merge(referenced.spec, spec, source), loader.sources[name]
    arguments = {p.name: p.value for p in spec.arguments.parameters}
    missing_values = [name for name, value in arguments.items() if value is None]
    if missing_values:
        raise ManifestError(f"{source}: spec.arguments.parameters {missing_values} have no value")
    for parameter in spec.arguments.parameters:
        if parameter.enum is not None and parameter.value not in parameter.enum:
            raise ManifestError(
                f"{source}: spec.arguments.parameters {parameter.name}={parameter.value!r} is "
                f"not one of {list(parameter.enum)}"
            )
    builder = _PlanBuilder(loader, spec, own_source)
    if not spec.entrypoint:
        raise ManifestError(f"{source}: spec.entrypoint is required")
    entry = builder.reach(OWN_SCOPE, spec.entrypoint, f"{source}: spec.entrypoint")
    on_exit = (
        builder.reach(OWN_SCOPE, spec.on_exit, f"{source}: spec.onExit") if spec.on_exit else None
    )
    builder.walk()
    values = {name: str(value) for name, value in arguments.items()}
    _check_inputs_supplied(entry, set(values), f"{source}: spec.arguments")
    if on_exit is not None:
        _check_inputs_supplied(on_exit, set(), f"{source}: spec.onExit")
    for template in builder.entries.values():
        _check_template(template, builder, secrets)
    globals_ = scopes.global_names(values)
    exit_keys = builder.reachable_from(on_exit) if on_exit else set()
    for key, template in builder.entries.items():
        scopes.check_template(
            template.template,
            template.where,
            globals_ | (scopes.EXIT_NAMES if key in exit_keys else frozenset()),
            builder.task_view(template),
        )
    return WorkflowPlan(
        source=source,
        name=meta.name,
        generate_name=meta.generate_name,
        namespace=meta.namespace or loader.namespace or DEFAULT_NAMESPACE,
        arguments=values,
        entrypoint=entry,
        on_exit=on_exit,
        parallelism=spec.parallelism,
        active_deadline_seconds=spec.active_deadline_seconds,
        templates=dict(builder.entries),
        depends=dict(builder.depends),
    )


def _source(kind: str, manifest: Mapping[str, Any]) -> str:
    metadata = manifest.get("metadata") if isinstance(manifest, Mapping) else None
    name = ""
    if isinstance(metadata, Mapping):
        name = str(metadata.get("name") or metadata.get("generateName") or "")
    return f"{kind}/{name or '?'}"


def _merge(base: WorkflowSpec, workflow: WorkflowSpec, source: str) -> WorkflowSpec:
    """The Workflow's fields override the WorkflowTemplate's; arguments merge by name."""
    if workflow.templates:
        raise ManifestError(
            f"{source}: spec.templates together with spec.workflowTemplateRef is not supported "
            "locally: put the templates in the WorkflowTemplate"
        )
    overrides = {
        name: getattr(workflow, name)
        for name in workflow.model_fields_set - {"workflow_template_ref", "arguments"}
    }
    parameters = {p.name: p for p in base.arguments.parameters}
    parameters.update({p.name: p for p in workflow.arguments.parameters})
    arguments = base.arguments.model_copy(update={"parameters": tuple(parameters.values())})
    return base.model_copy(
        update={
            **overrides,
            "arguments": arguments,
            "workflow_template_ref": workflow.workflow_template_ref,
        }
    )


class _TemplateLoader:
    """Parses the WorkflowTemplates a run uses, once each, on first reference."""

    def __init__(self, manifests: Mapping[str, Mapping[str, Any]]) -> None:
        self.manifests = manifests
        self.loaded: dict[str, WorkflowTemplateManifest] = {}
        self.sources: dict[str, str] = {}
        self.namespace: str | None = None

    def load(self, name: str, where: str) -> WorkflowTemplateManifest:
        if name in self.loaded:
            return self.loaded[name]
        if name not in self.manifests:
            known = ", ".join(sorted(self.manifests)) or "none"
            raise ManifestError(f"{where}: no WorkflowTemplate named {name!r} (given: {known})")
        source = f"WorkflowTemplate/{name}"
        manifest = parse(WorkflowTemplateManifest, self.manifests[name], source)
        if manifest.metadata.name != name:
            raise ManifestError(f"{source}: metadata.name is {manifest.metadata.name!r}")
        self.loaded[name] = manifest
        self.sources[name] = source
        self.namespace = self.namespace or manifest.metadata.namespace
        return manifest


class _PlanBuilder:
    """Collects the templates reachable from the entrypoint and onExit, parsing depends."""

    def __init__(self, loader: _TemplateLoader, spec: WorkflowSpec, source: str) -> None:
        self.loader = loader
        self.volumes = {volume.name: volume for volume in spec.volumes}
        self.scopes: dict[str, tuple[str, tuple[Template, ...]]] = {
            OWN_SCOPE: (source, spec.templates)
        }
        self.entries: dict[tuple[str, str], TemplateEntry] = {}
        self.depends: dict[tuple[str, str, str], Depends] = {}
        self.edges: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.queue: list[TemplateEntry] = []

    def _scope(self, scope: str, where: str) -> tuple[str, tuple[Template, ...]]:
        if scope not in self.scopes:
            manifest = self.loader.load(scope, where)
            self.scopes[scope] = (self.loader.sources[scope], manifest.spec.templates)
        return self.scopes[scope]

    def reach(self, scope: str, name: str, where: str) -> TemplateEntry:
        key = (scope, name)
        if key in self.entries:
            return self.entries[key]
        source, templates = self._scope(scope, where)
        matches = [i for i, template in enumerate(templates) if template.name == name]
        if not matches:
            known = ", ".join(t.name for t in templates)
            raise ManifestError(f"{where}: no template {name!r} in {source} (templates: {known})")
        if len(matches) > 1:
            raise ManifestError(f"{source}: template name {name!r} is used twice")
        entry = TemplateEntry(scope, source, matches[0], templates[matches[0]])
        self.entries[key] = entry
        self.queue.append(entry)
        return entry

    def resolve(self, scope: str, task: DagTask) -> TemplateEntry:
        if task.template_ref is not None:
            return self.entries[(task.template_ref.name, task.template_ref.template)]
        return self.entries[(scope, str(task.template))]

    def walk(self) -> None:
        while self.queue:
            entry = self.queue.pop()
            key = (entry.scope, entry.template.name)
            self.edges[key] = set()
            dag = entry.template.dag
            if dag is None:
                continue
            for index, task in enumerate(dag.tasks):
                where = f"{entry.where}.dag.tasks[{index}] ({task.name})"
                if (task.template is None) == (task.template_ref is None):
                    raise ManifestError(f"{where}: needs exactly one of template or templateRef")
                if task.template_ref is not None:
                    target = self.reach(task.template_ref.name, task.template_ref.template, where)
                else:
                    target = self.reach(entry.scope, str(task.template), where)
                self.edges[key].add((target.scope, target.template.name))
            self._check_dag(entry)

    def reachable_from(self, entry: TemplateEntry) -> set[tuple[str, str]]:
        seen: set[tuple[str, str]] = set()
        stack = [(entry.scope, entry.template.name)]
        while stack:
            key = stack.pop()
            if key not in seen:
                seen.add(key)
                stack.extend(self.edges.get(key, ()))
        return seen

    def task_view(self, entry: TemplateEntry) -> scopes.DagView:
        """What the variable check needs of a DAG: each task's dependencies and template."""
        dag = entry.template.dag
        if dag is None:
            return scopes.DagView({}, {})
        deps = {
            task.name: referenced_tasks(expression)
            if (expression := self.depends.get((entry.scope, entry.template.name, task.name)))
            else set()
            for task in dag.tasks
        }
        targets = {task.name: self.resolve(entry.scope, task).template for task in dag.tasks}
        fanned_out = frozenset(task.name for task in dag.tasks if task.fans_out)
        return scopes.DagView(deps, targets, fanned_out)

    def _check_dag(self, entry: TemplateEntry) -> None:
        dag = entry.template.dag
        assert dag is not None
        names = [task.name for task in dag.tasks]
        if not names:
            raise ManifestError(f"{entry.where}.dag.tasks: a DAG needs at least one task")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ManifestError(f"{entry.where}.dag.tasks: task names used twice: {duplicates}")
        graph: dict[str, set[str]] = {}
        for index, task in enumerate(dag.tasks):
            where = f"{entry.where}.dag.tasks[{index}] ({task.name})"
            expression = _task_depends(task, where)
            deps = referenced_tasks(expression) if expression else set()
            unknown = sorted(deps - set(names))
            if unknown:
                raise ManifestError(f"{where}: depends on unknown task(s) {unknown}")
            if task.name in deps:
                raise ManifestError(f"{where}: a task cannot depend on itself")
            if expression is not None:
                self.depends[(entry.scope, entry.template.name, task.name)] = expression
            graph[task.name] = deps
            expansions = [task.with_items, task.with_param, task.with_sequence]
            if sum(value is not None for value in expansions) > 1:
                raise ManifestError(f"{where}: use only one of withItems, withParam, withSequence")
            sequence = task.with_sequence
            if sequence is not None and (sequence.count is None) == (sequence.end is None):
                raise ManifestError(f"{where}.withSequence: needs exactly one of count or end")
        cycle = _find_cycle(graph)
        if cycle:
            raise ManifestError(f"{entry.where}.dag: dependency cycle {' -> '.join(cycle)}")


def _task_depends(task: DagTask, where: str) -> Depends | None:
    if task.depends is not None and task.dependencies is not None:
        raise ManifestError(f"{where}: use depends or dependencies, not both")
    try:
        if task.depends is not None:
            return parse_depends(task.depends)
    except ManifestError as error:
        raise ManifestError(f"{where}: {error}") from None
    if task.dependencies:
        return dependencies_expression(task.dependencies)
    return None


def _find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return []


def _check_inputs_supplied(entry: TemplateEntry, supplied: set[str], where: str) -> None:
    missing = [
        p.name
        for p in entry.template.inputs.parameters
        if p.name not in supplied and p.value is None and p.default is None
    ]
    if missing:
        raise ManifestError(f"{where}: template {entry.template.name!r} needs parameters {missing}")


def _check_template(
    entry: TemplateEntry,
    builder: _PlanBuilder,
    secrets: Mapping[str, Mapping[str, str]] | None,
) -> None:
    template, where = entry.template, entry.where
    if (template.container is None) == (template.dag is None):
        raise ManifestError(f"{where}: needs exactly one of container or dag")
    strategy = template.retry_strategy
    if strategy is not None and strategy.limit is None:
        raise ManifestError(
            f"{where}.retryStrategy.limit is required locally: without it Argo retries forever"
        )
    for index, artifact in enumerate(template.outputs.artifacts):
        archive = artifact.archive
        if archive is not None and (archive.none is None) == (archive.tar is None):
            raise ManifestError(f"{where}.outputs.artifacts[{index}].archive: one of none or tar")
    if template.dag is not None:
        _check_dag_template(entry, builder)
    else:
        _check_container_template(entry, builder, secrets)


def _check_dag_template(entry: TemplateEntry, builder: _PlanBuilder) -> None:
    template, where = entry.template, entry.where
    dag_only = {
        "daemon": template.daemon,
        "activeDeadlineSeconds": template.active_deadline_seconds is not None,
        "volumes": bool(template.volumes),
    }
    for field, present in dag_only.items():
        if present:
            raise ManifestError(f"{where}.{field}: has no effect on a DAG template; refused")
    for index, input_artifact in enumerate(template.inputs.artifacts):
        if input_artifact.path is not None:
            raise ManifestError(f"{where}.inputs.artifacts[{index}].path: a DAG has no filesystem")
    for index, parameter in enumerate(template.outputs.parameters):
        if parameter.value_from.parameter is None or parameter.value_from.path is not None:
            raise ManifestError(
                f"{where}.outputs.parameters[{index}].valueFrom: a DAG output needs `parameter`"
            )
    for index, artifact in enumerate(template.outputs.artifacts):
        if artifact.from_ is None or artifact.path is not None:
            raise ManifestError(f"{where}.outputs.artifacts[{index}]: a DAG output needs `from`")
    assert template.dag is not None
    for index, task in enumerate(template.dag.tasks):
        _check_task_arguments(
            task, builder.resolve(entry.scope, task), f"{where}.dag.tasks[{index}]"
        )


def _check_task_arguments(task: DagTask, target: TemplateEntry, where: str) -> None:
    declared = {p.name for p in target.template.inputs.parameters}
    given = [p.name for p in task.arguments.parameters]
    for name in given:
        if name not in declared:
            raise ManifestError(
                f"{where} ({task.name}).arguments: template {target.template.name!r} has no "
                f"input parameter {name!r} (declared: {sorted(declared)})"
            )
    if len(set(given)) != len(given):
        raise ManifestError(f"{where} ({task.name}).arguments: a parameter is given twice")
    _check_inputs_supplied(target, set(given), f"{where} ({task.name})")
    declared_artifacts = {a.name: a for a in target.template.inputs.artifacts}
    for artifact in task.arguments.artifacts:
        if artifact.name not in declared_artifacts:
            raise ManifestError(
                f"{where} ({task.name}).arguments: template {target.template.name!r} has no "
                f"input artifact {artifact.name!r}"
            )
        if (artifact.from_ is None) == (artifact.s3 is None):
            raise ManifestError(
                f"{where} ({task.name}).arguments.artifacts ({artifact.name}): needs from or s3"
            )
    supplied = {a.name for a in task.arguments.artifacts}
    for name, declared_artifact in declared_artifacts.items():
        if name not in supplied and declared_artifact.s3 is None and not declared_artifact.optional:
            raise ManifestError(
                f"{where} ({task.name}): input artifact {name!r} of template "
                f"{target.template.name!r} is not supplied"
            )


def _check_container_template(
    entry: TemplateEntry,
    builder: _PlanBuilder,
    secrets: Mapping[str, Mapping[str, str]] | None,
) -> None:
    template, where = entry.template, entry.where
    container = template.container
    assert container is not None
    if not container.command:
        raise ManifestError(
            f"{where}.container.command is required locally: the image's entrypoint is unknown"
        )
    if template.parallelism is not None:
        raise ManifestError(f"{where}.parallelism: only DAG templates run tasks in parallel")
    volumes = {**builder.volumes, **{v.name: v for v in template.volumes}}
    mounts: list[str] = []
    for index, mount in enumerate(container.volume_mounts):
        mount_where = f"{where}.container.volumeMounts[{index}]"
        if mount.name not in volumes:
            raise ManifestError(f"{mount_where}: no volume named {mount.name!r}")
        mount_path = mount.mount_path
        clean = posixpath.normpath(mount_path) == mount_path
        if not mount_path.startswith("/") or mount_path == "/" or not clean:
            raise ManifestError(
                f"{mount_where}.mountPath: {mount_path!r} must be a clean absolute path"
            )
        mounts.append(mount_path)
    for index, output in enumerate(template.outputs.artifacts):
        if output.from_ is not None:
            raise ManifestError(f"{where}.outputs.artifacts[{index}].from: only DAG outputs")
    for index, parameter in enumerate(template.outputs.parameters):
        if parameter.value_from.parameter is not None:
            raise ManifestError(f"{where}.outputs.parameters[{index}]: `parameter` is DAG-only")
    for field, path in _declared_paths(template):
        if path is None:
            raise ManifestError(f"{where}.{field}: a container template needs a path")
        if not has_tags(path) and not any(is_under(path, mount) for mount in mounts):
            raise ManifestError(
                f"{where}.{field}: {path!r} is not under a volumeMount; locally a task can "
                f"only write inside its emptyDir mounts ({mounts or 'none declared'})"
            )
    if template.daemon and (template.outputs.parameters or template.outputs.artifacts):
        raise ManifestError(f"{where}.outputs: a daemon template cannot have outputs locally")
    probe = container.readiness_probe
    if probe is not None:
        if not template.daemon:
            raise ManifestError(f"{where}.container.readinessProbe: only used on daemon templates")
        kinds = (probe.tcp_socket, probe.http_get, probe.exec_)
        if sum(kind is not None for kind in kinds) != 1:
            raise ManifestError(
                f"{where}.container.readinessProbe: one of tcpSocket, httpGet or exec"
            )
    for index, variable in enumerate(container.env):
        env_where = f"{where}.container.env[{index}] ({variable.name})"
        if (variable.value is None) == (variable.value_from is None):
            raise ManifestError(f"{env_where}: needs exactly one of value or valueFrom")
        if variable.value_from is None or secrets is None:
            continue
        ref = variable.value_from.secret_key_ref
        missing = ref.key not in secrets.get(ref.name, {})
        if not ref.optional and not has_tags(ref.name + ref.key) and missing:
            raise ManifestError(
                f"{env_where}: secret {ref.name!r} key {ref.key!r} is not available locally "
                f"(secrets: {sorted(secrets)})"
            )


def _declared_paths(template: Template) -> Iterator[tuple[str, str | None]]:
    for index, artifact in enumerate(template.inputs.artifacts):
        yield f"inputs.artifacts[{index}].path", artifact.path
    for index, output in enumerate(template.outputs.artifacts):
        yield f"outputs.artifacts[{index}].path", output.path
    for index, parameter in enumerate(template.outputs.parameters):
        yield f"outputs.parameters[{index}].valueFrom.path", parameter.value_from.path
