"""From manifest dicts to a checked plan: everything is validated before anything runs.

A Workflow either carries its own spec or names a WorkflowTemplate (`workflowTemplateRef`),
whose spec it then overrides field by field (arguments by parameter name), as Argo merges
them. DAG tasks and steps may use `templateRef` to run a template of another
(Cluster)WorkflowTemplate, or carry an `inline` template. Every manifest involved is checked
strictly (model.py), then the structure (references, cycles, volumes, secrets, ConfigMaps)
of each reachable template. Argo's own rules (validate/) have run before this; what is
refused here is what the local engine cannot run faithfully.
"""

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.engine.errors import ManifestError
from workflows.engine.expressions import (
    Depends,
    dependencies_expression,
    parse_depends,
    referenced_tasks,
)
from workflows.engine.filesystem import inner_uses
from workflows.engine.images import ENTRYPOINTS, entrypoint_of
from workflows.engine.model import (
    Call_,
    Container,
    DagTask,
    DnsConfig,
    Hook,
    ParameterSource,
    Template,
    WorkflowArtifact,
    WorkflowManifest,
    WorkflowSpec,
    WorkflowTemplateManifest,
    parse,
)
from workflows.engine.variables import has_tags
from workflows.engine.workspace import is_under

OWN_SCOPE = ""
"""Template scope of the workflow's own (or merged) templates; others name a WorkflowTemplate
(`name`) or a ClusterWorkflowTemplate (`cluster:name`)."""
CLUSTER_PREFIX = "cluster:"
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class TemplateEntry:
    """A template and where it lives, so nested references and messages resolve correctly."""

    scope: str
    source: str
    path: str
    """Its JSON path in the manifest, e.g. `spec.templates[2]`."""
    template: Template

    @property
    def where(self) -> str:
        name = f" ({self.template.name})" if self.template.name else ""
        return f"{self.source}: {self.path}{name}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.scope, self.template.name or self.path)


@dataclass(frozen=True)
class ExitHook:
    """`spec.onExit` or `spec.hooks.exit`: a template run after the entrypoint, whatever
    happened, with the arguments the hook gives it."""

    entry: TemplateEntry
    hook: Hook


@dataclass(frozen=True)
class WorkflowPlan:
    """A Workflow ready to run: merged spec, resolved templates, checked references."""

    source: str
    name: str | None
    generate_name: str | None
    namespace: str
    arguments: Mapping[str, str]
    entrypoint: TemplateEntry
    on_exit: ExitHook | None
    parallelism: int | None
    active_deadline_seconds: int | None
    templates: Mapping[tuple[str, str], TemplateEntry]
    depends: Mapping[tuple[str, str, str], Depends]
    """(scope, DAG template key, task name) -> parsed depends/dependencies."""
    spec: WorkflowSpec
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifacts: Mapping[str, WorkflowArtifact] = field(default_factory=dict)

    def resolve(self, parent: TemplateEntry, call: Call_ | Hook) -> TemplateEntry:
        return resolve_call(self.templates, parent, call)

    def task_depends(self, entry: TemplateEntry, task: str) -> Depends | None:
        return self.depends.get((*entry.key, task))

    @property
    def dns_config(self) -> DnsConfig | None:
        return self.spec.dns_config


def resolve_call(
    templates: Mapping[tuple[str, str], TemplateEntry], parent: TemplateEntry, call: Call_ | Hook
) -> TemplateEntry:
    """The template a task, step or hook runs: inline, by templateRef, or by name."""
    inline = getattr(call, "inline", None)
    if inline is not None:
        name = getattr(call, "name", "")
        return TemplateEntry(parent.scope, parent.source, f"{parent.path}.{name}.inline", inline)
    if call.template_ref is not None:
        ref = call.template_ref
        scope = (CLUSTER_PREFIX if ref.cluster_scope else "") + ref.name
        return templates[(scope, ref.template)]
    return templates[(parent.scope, str(call.template))]


def load_plan(
    workflow: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
) -> WorkflowPlan:
    """Check a Workflow (and the WorkflowTemplates it uses) and resolve it into a plan.

    `secrets` (name -> key -> value), when given, must hold every secretKeyRef the
    reachable templates use; `config_maps` likewise every configMapKeyRef of the
    workflow's parameters. Raises ManifestError (or its UnsupportedField) on any problem.
    """
    source = _source("Workflow", workflow)
    manifest = parse(WorkflowManifest, workflow, source)
    meta = manifest.metadata
    if not meta.name and not meta.generate_name:
        raise ManifestError(f"{source}: metadata needs name or generateName")
    loader = _TemplateLoader(templates)
    spec, own_source = manifest.spec, source
    if spec.workflow_template_ref is not None:
        ref = spec.workflow_template_ref
        referenced = loader.load(ref.name, ref.cluster_scope, f"{source}: spec.workflowTemplateRef")
        spec = _merge(referenced.spec, spec, source)
        own_source = loader.sources[_scope_name(ref.name, ref.cluster_scope)]
    arguments = _workflow_arguments(spec, source, config_maps)
    builder = _PlanBuilder(loader, spec, own_source)
    if not spec.entrypoint:
        raise ManifestError(f"{source}: spec.entrypoint is required")
    entry = builder.reach(OWN_SCOPE, spec.entrypoint, f"{source}: spec.entrypoint")
    exit_hook = spec.hooks.get("exit") or (Hook(template=spec.on_exit) if spec.on_exit else None)
    on_exit = None
    if exit_hook is not None:
        root = TemplateEntry(OWN_SCOPE, own_source, "spec", Template(name=""))
        on_exit = ExitHook(builder.reach_call(root, exit_hook, f"{source}: spec.onExit"), exit_hook)
    unsupported_hooks = sorted(set(spec.hooks) - {"exit"})
    if unsupported_hooks:
        raise ManifestError(
            f"{source}: spec.hooks {unsupported_hooks}: only `exit` hooks run locally "
            "(expression hooks fire on the controller's view of a running workflow)"
        )
    builder.walk()
    _check_inputs_supplied(entry, set(arguments), f"{source}: spec.arguments")
    for template in builder.entries.values():
        _check_template(template, builder, secrets)
    return WorkflowPlan(
        source=source,
        name=meta.name,
        generate_name=meta.generate_name,
        namespace=meta.namespace or loader.namespace or DEFAULT_NAMESPACE,
        arguments=arguments,
        entrypoint=entry,
        on_exit=on_exit,
        parallelism=spec.parallelism,
        active_deadline_seconds=spec.active_deadline_seconds,
        templates=dict(builder.entries),
        depends=dict(builder.depends),
        spec=spec,
        labels=dict(meta.labels),
        annotations=dict(meta.annotations),
        artifacts={artifact.name: artifact for artifact in spec.arguments.artifacts},
    )


def _source(kind: str, manifest: Mapping[str, Any]) -> str:
    metadata = manifest.get("metadata") if isinstance(manifest, Mapping) else None
    name = ""
    if isinstance(metadata, Mapping):
        name = str(metadata.get("name") or metadata.get("generateName") or "")
    return f"{kind}/{name or '?'}"


def _scope_name(name: str, cluster: bool) -> str:
    return (CLUSTER_PREFIX if cluster else "") + name


def _workflow_arguments(
    spec: WorkflowSpec, source: str, config_maps: Mapping[str, Mapping[str, str]] | None
) -> dict[str, str]:
    values: dict[str, str] = {}
    for parameter in spec.arguments.parameters:
        where = f"{source}: spec.arguments.parameters {parameter.name}"
        value = parameter.value
        if value is None and parameter.value_from is not None:
            value = config_map_value(parameter.value_from, config_maps, where)
        if value is None:
            raise ManifestError(f"{where} has no value")
        if parameter.enum is not None and value not in parameter.enum:
            raise ManifestError(f"{where}={value!r} is not one of {list(parameter.enum)}")
        values[parameter.name] = value
    return values


def config_map_value(
    source: ParameterSource, config_maps: Mapping[str, Mapping[str, str]] | None, where: str
) -> str | None:
    """A parameter's `valueFrom.configMapKeyRef` (its `default` when the key is absent)."""
    ref = source.config_map_key_ref
    if ref is None:
        return source.default
    found = (config_maps or {}).get(ref.name, {}).get(ref.key)
    if found is not None:
        return found
    if source.default is not None or ref.optional:
        return source.default
    if config_maps is None:
        return ""  # checked without ConfigMaps (dry run of a plan): the run checks again
    known = ", ".join(sorted(config_maps)) or "none given"
    raise ManifestError(
        f"{where}: ConfigMap {ref.name!r} has no key {ref.key!r} (ConfigMaps: {known})"
    )


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
    artifacts = {a.name: a for a in base.arguments.artifacts}
    artifacts.update({a.name: a for a in workflow.arguments.artifacts})
    arguments = base.arguments.model_copy(
        update={"parameters": tuple(parameters.values()), "artifacts": tuple(artifacts.values())}
    )
    return base.model_copy(
        update={
            **overrides,
            "arguments": arguments,
            "workflow_template_ref": workflow.workflow_template_ref,
        }
    )


class _TemplateLoader:
    """Parses the (Cluster)WorkflowTemplates a run uses, once each, on first reference."""

    def __init__(self, manifests: Mapping[str, Mapping[str, Any]]) -> None:
        self.manifests: dict[str, Mapping[str, Any]] = {}
        for key, manifest in manifests.items():
            metadata = manifest.get("metadata") if isinstance(manifest, Mapping) else None
            name = metadata.get("name") if isinstance(metadata, Mapping) else None
            cluster = manifest.get("kind") == "ClusterWorkflowTemplate"
            self.manifests[_scope_name(str(name or key), cluster)] = manifest
        self.loaded: dict[str, WorkflowTemplateManifest] = {}
        self.sources: dict[str, str] = {}
        self.namespace: str | None = None

    def load(self, name: str, cluster: bool, where: str) -> WorkflowTemplateManifest:
        scope = _scope_name(name, cluster)
        if scope in self.loaded:
            return self.loaded[scope]
        kind = "ClusterWorkflowTemplate" if cluster else "WorkflowTemplate"
        if scope not in self.manifests:
            known = ", ".join(sorted(self.manifests)) or "none"
            raise ManifestError(f"{where}: no {kind} named {name!r} (given: {known})")
        source = f"{kind}/{name}"
        manifest = parse(WorkflowTemplateManifest, self.manifests[scope], source)
        self.loaded[scope] = manifest
        self.sources[scope] = source
        if not cluster:
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
        self.queue: list[TemplateEntry] = []

    def _scope(self, scope: str, where: str) -> tuple[str, tuple[Template, ...]]:
        if scope not in self.scopes:
            cluster = scope.startswith(CLUSTER_PREFIX)
            name = scope.removeprefix(CLUSTER_PREFIX)
            manifest = self.loader.load(name, cluster, where)
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
        path = f"spec.templates[{matches[0]}]"
        entry = TemplateEntry(scope, source, path, templates[matches[0]])
        self.entries[key] = entry
        self.queue.append(entry)
        return entry

    def reach_call(self, parent: TemplateEntry, call: Call_ | Hook, where: str) -> TemplateEntry:
        inline = getattr(call, "inline", None)
        given = [call.template is not None, call.template_ref is not None, inline is not None]
        if sum(given) != 1:
            raise ManifestError(f"{where}: needs exactly one of template, templateRef or inline")
        if inline is not None:
            entry = resolve_call(self.entries, parent, call)
            if entry.key not in self.entries:
                self.entries[entry.key] = entry
                self.queue.append(entry)
            return entry
        if call.template_ref is not None:
            ref = call.template_ref
            return self.reach(_scope_name(ref.name, ref.cluster_scope), ref.template, where)
        return self.reach(parent.scope, str(call.template), where)

    def walk(self) -> None:
        while self.queue:
            entry = self.queue.pop()
            for where, call in calls_of(entry):
                self.reach_call(entry, call, where)
                hook = call.exit_hook
                if hook is not None:
                    self.reach_call(entry, hook, f"{where}.hooks.exit")
                other = sorted(set(call.hooks) - {"exit"})
                if other:
                    raise ManifestError(
                        f"{where}.hooks {other}: only `exit` hooks run locally (expression "
                        "hooks fire on the controller's view of a running node)"
                    )
            if entry.template.dag is not None:
                self._check_dag(entry)

    def _check_dag(self, entry: TemplateEntry) -> None:
        dag = entry.template.dag
        assert dag is not None
        names = [task.name for task in dag.tasks]
        graph: dict[str, set[str]] = {}
        for index, task in enumerate(dag.tasks):
            where = f"{entry.where}.dag.tasks[{index}] ({task.name})"
            expression = _task_depends(task, where)
            deps = referenced_tasks(expression) if expression else set()
            unknown = sorted(deps - set(names))
            if unknown:
                raise ManifestError(f"{where}: depends on unknown task(s) {unknown}")
            if expression is not None:
                self.depends[(*entry.key, task.name)] = expression
            graph[task.name] = deps
        cycle = _find_cycle(graph)
        if cycle:
            raise ManifestError(f"{entry.where}.dag: dependency cycle {' -> '.join(cycle)}")


def calls_of(entry: TemplateEntry) -> Iterator[tuple[str, Call_]]:
    """(where, task or step) for every call a DAG or steps template makes."""
    template = entry.template
    if template.dag is not None:
        for index, task in enumerate(template.dag.tasks):
            yield f"{entry.where}.dag.tasks[{index}] ({task.name})", task
    for group_index, group in enumerate(template.steps or ()):
        for index, step in enumerate(group):
            yield f"{entry.where}.steps[{group_index}][{index}] ({step.name})", step


def _task_depends(task: DagTask, where: str) -> Depends | None:
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
        if p.name not in supplied and p.value is None and p.default is None and not p.value_from
    ]
    if missing:
        raise ManifestError(f"{where}: template {entry.template.name!r} needs parameters {missing}")


def _check_template(
    entry: TemplateEntry,
    builder: _PlanBuilder,
    secrets: Mapping[str, Mapping[str, str]] | None,
) -> None:
    template, where = entry.template, entry.where
    kinds = [template.pod_spec, template.container_set, template.dag, template.steps]
    if sum(kind is not None for kind in kinds) != 1:
        raise ManifestError(
            f"{where}: needs exactly one of container, script, containerSet, dag or steps"
        )
    if template.container is not None and template.script is not None:
        raise ManifestError(f"{where}: needs exactly one of container or script")
    strategy = template.retry_strategy
    if strategy is not None and strategy.limit is None:
        raise ManifestError(
            f"{where}.retryStrategy.limit is required locally: without it Argo retries forever"
        )
    for index, artifact in enumerate(template.outputs.artifacts):
        archive = artifact.archive
        if archive is not None and (archive.none is None) == (archive.tar is None):
            raise ManifestError(f"{where}.outputs.artifacts[{index}].archive: one of none or tar")
    if template.dag is not None or template.steps is not None:
        _check_composite_template(entry, builder)
    else:
        _check_pod_template(entry, builder, secrets)


def _check_composite_template(entry: TemplateEntry, builder: _PlanBuilder) -> None:
    template, where = entry.template, entry.where
    composite_only = {
        "daemon": template.daemon,
        "activeDeadlineSeconds": template.active_deadline_seconds is not None,
        "volumes": bool(template.volumes),
    }
    for name, present in composite_only.items():
        if present:
            raise ManifestError(f"{where}.{name}: has no effect on a DAG or steps template")
    for index, parameter in enumerate(template.outputs.parameters):
        source = parameter.value_from
        if (source.parameter is None) == (source.expression is None) or source.path is not None:
            raise ManifestError(
                f"{where}.outputs.parameters[{index}].valueFrom: needs `parameter` or "
                "`expression` (a DAG or steps template has no files)"
            )
    for index, artifact in enumerate(template.outputs.artifacts):
        if (artifact.from_ is None) == (artifact.from_expression is None) or artifact.path:
            raise ManifestError(
                f"{where}.outputs.artifacts[{index}]: needs `from` or `fromExpression`"
            )
    for call_where, call in calls_of(entry):
        _check_call_arguments(call, resolve_call(builder.entries, entry, call), call_where)
        if call.with_sequence is not None:
            sequence = call.with_sequence
            if (sequence.count is None) == (sequence.end is None):
                raise ManifestError(f"{call_where}.withSequence: needs exactly one of count or end")


def _check_call_arguments(call: Call_, target: TemplateEntry, where: str) -> None:
    # Arguments a template does not declare are ignored, as Argo ignores them.
    given = [p.name for p in call.arguments.parameters]
    if len(set(given)) != len(given):
        raise ManifestError(f"{where}.arguments: a parameter is given twice")
    _check_inputs_supplied(target, set(given), where)
    declared_artifacts = {a.name: a for a in target.template.inputs.artifacts}
    for artifact in call.arguments.artifacts:
        sources = [artifact.from_, artifact.s3, artifact.raw]
        if sum(source is not None for source in sources) != 1:
            raise ManifestError(
                f"{where}.arguments.artifacts ({artifact.name}): needs one of from, s3 or raw"
            )
    supplied = {a.name for a in call.arguments.artifacts}
    for name, declared_artifact in declared_artifacts.items():
        has_own = declared_artifact.s3 is not None or declared_artifact.raw is not None
        if name not in supplied and not has_own and not declared_artifact.optional:
            raise ManifestError(
                f"{where}: input artifact {name!r} of template "
                f"{target.template.name or '(inline)'!r} is not supplied"
            )


def pod_containers(template: Template) -> Iterator[tuple[str, Container]]:
    """(field path, container) of every container a pod template runs."""
    for index, init in enumerate(template.init_containers):
        yield f"initContainers[{index}]", init
    if template.container is not None:
        yield "container", template.container
    if template.script is not None:
        yield "script", template.script
    if template.container_set is not None:
        for index, member in enumerate(template.container_set.containers):
            yield f"containerSet.containers[{index}]", member


def _check_pod_template(
    entry: TemplateEntry,
    builder: _PlanBuilder,
    secrets: Mapping[str, Mapping[str, str]] | None,
) -> None:
    template, where = entry.template, entry.where
    if template.parallelism is not None:
        raise ManifestError(f"{where}.parallelism: only DAG and steps templates run in parallel")
    volumes = {**builder.volumes, **{v.name: v for v in template.volumes}}
    for name, volume in volumes.items():
        if volume.empty_dir is None:
            raise ManifestError(f"{where}: volume {name!r}: only emptyDir volumes run locally")
    container_set = template.container_set
    if container_set is not None:
        names = [c.name for c in container_set.containers]
        for member in container_set.containers:
            unknown = sorted(set(member.dependencies) - set(names))
            if unknown:
                raise ManifestError(f"{where}.containerSet: {member.name} depends on {unknown}")
    for field_path, container in pod_containers(template):
        container_where = f"{where}.{field_path}"
        if not container.command and entrypoint_of(container.image) is None:
            known = ", ".join(sorted(ENTRYPOINTS))
            raise ManifestError(
                f"{container_where}.command is required locally: the entrypoint of image "
                f"{container.image!r} is not known here (known entrypoints are {known})"
            )
        mounts = [*container.volume_mounts]
        if container_set is not None:
            mounts += container_set.volume_mounts
        _check_mounts(mounts, volumes, container_where)
        _check_env(container, container_where, secrets)
    if template.script is not None and not template.script.command:
        raise ManifestError(f"{where}.script.command is required locally")
    for index, output in enumerate(template.outputs.artifacts):
        if output.from_ is not None or output.from_expression is not None:
            raise ManifestError(f"{where}.outputs.artifacts[{index}].from: only DAG/steps outputs")
    for index, parameter in enumerate(template.outputs.parameters):
        if parameter.value_from.parameter is not None or parameter.value_from.expression:
            raise ManifestError(
                f"{where}.outputs.parameters[{index}]: `parameter`/`expression` are DAG/steps-only"
            )
    for field_path, path in declared_paths(template):
        if path is None:
            raise ManifestError(f"{where}.{field_path}: a pod template needs a path")
    main = template.pod_spec
    if template.daemon and (template.outputs.parameters or template.outputs.artifacts):
        raise ManifestError(f"{where}.outputs: a daemon template cannot have outputs locally")
    probe = main.readiness_probe if main is not None else None
    if probe is not None:
        if not template.daemon:
            raise ManifestError(f"{where}.container.readinessProbe: only used on daemon templates")
        kinds = (probe.tcp_socket, probe.http_get, probe.exec_)
        if sum(kind is not None for kind in kinds) != 1:
            raise ManifestError(
                f"{where}.container.readinessProbe: one of tcpSocket, httpGet or exec"
            )


def _check_mounts(mounts: list[Any], volumes: Mapping[str, Any], where: str) -> None:
    for index, mount in enumerate(mounts):
        mount_where = f"{where}.volumeMounts[{index}]"
        if mount.name not in volumes:
            raise ManifestError(f"{mount_where}: no volume named {mount.name!r}")
        mount_path = mount.mount_path
        clean = posixpath.normpath(mount_path) == mount_path
        if not mount_path.startswith("/") or mount_path == "/" or not clean:
            raise ManifestError(
                f"{mount_where}.mountPath: {mount_path!r} must be a clean absolute path"
            )


def _check_env(
    container: Container, where: str, secrets: Mapping[str, Mapping[str, str]] | None
) -> None:
    for index, variable in enumerate(container.env):
        env_where = f"{where}.env[{index}] ({variable.name})"
        if (variable.value is None) == (variable.value_from is None):
            raise ManifestError(f"{env_where}: needs exactly one of value or valueFrom")
        if variable.value_from is None or secrets is None:
            continue
        ref = variable.value_from.secret_key_ref
        if ref is None:
            continue
        missing = ref.key not in secrets.get(ref.name, {})
        if not ref.optional and not has_tags(ref.name + ref.key) and missing:
            raise ManifestError(
                f"{env_where}: secret {ref.name!r} key {ref.key!r} is not available locally "
                f"(secrets: {sorted(secrets)})"
            )


def declared_paths(template: Template) -> Iterator[tuple[str, str | None]]:
    """(field path, container path) of every file a pod template reads or writes for Argo."""
    for index, artifact in enumerate(template.inputs.artifacts):
        yield f"inputs.artifacts[{index}].path", artifact.path
    for index, output in enumerate(template.outputs.artifacts):
        yield f"outputs.artifacts[{index}].path", output.path
    for index, parameter in enumerate(template.outputs.parameters):
        yield f"outputs.parameters[{index}].valueFrom.path", parameter.value_from.path


def remap_refusals(plan: WorkflowPlan) -> list[str]:
    """What a plan needs beyond remapped paths (workspace.py): declared paths outside every
    volumeMount, mount paths inside an argument's or a script's text, a workingDir or a
    dnsConfig. Empty for our own pipeline, whose steps take their paths as arguments."""
    problems: list[str] = []
    if plan.dns_config is not None:
        problems.append(f"{plan.source}: spec.dnsConfig needs the task's own /etc/resolv.conf")
    for entry in plan.templates.values():
        template = entry.template
        if not template.runs_pod:
            continue
        shared = template.container_set.volume_mounts if template.container_set else ()
        mounts = sorted(
            {m.mount_path for _, c in pod_containers(template) for m in c.volume_mounts}
            | {m.mount_path for m in shared}
        )
        for field_path, path in declared_paths(template):
            if path and not has_tags(path) and not any(is_under(path, m) for m in mounts):
                problems.append(
                    f"{entry.where}.{field_path}: {path!r} is not under a volumeMount "
                    f"({mounts or 'none declared'})"
                )
        for field_path, container in pod_containers(template):
            texts = [*container.command, *container.args]
            texts += [v.value for v in container.env if v.value is not None]
            if container is template.script:
                texts.append(template.script.source)
            for text in texts:
                inner = inner_uses(text, mounts)
                if inner:
                    problems.append(
                        f"{entry.where}.{field_path}: {text[:60]!r} uses {inner[0]} inside "
                        "its text, where it cannot be rewritten"
                    )
            if container.working_dir and not any(
                is_under(container.working_dir, m) for m in mounts
            ):
                problems.append(
                    f"{entry.where}.{field_path}.workingDir: {container.working_dir!r} is not "
                    "under a volumeMount"
                )
    return problems
