"""Argo's validator as one traversal (validate.go: Workflow, WorkflowTemplate, CronWorkflow,
validateTemplateHolder, validateTemplate, validateLeaf, validateDAG, validateSteps).

Like Argo, it validates the entrypoint with the workflow's arguments, then the onExit
template, then every template of the manifest whether reachable or not, each template's
body once; every call (a DAG task, a step) is checked against the template it runs.
Global names grow as Argo's do while it walks (`workflow.failures` appears only once the
onExit template is reached, a `globalName` once its task is seen), so a manifest is judged
in the same order a controller judges it. Unlike Argo, which stops at the first error,
every problem is collected.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from workflows.engine.validate import dag as dag_rules
from workflows.engine.validate import templates as rules
from workflows.engine.validate.arguments import (
    argument_problems,
    dependency_problems,
    supply_problems,
)
from workflows.engine.validate.cron import cron_problems
from workflows.engine.validate.names import is_parameter, named_list_errors, object_name_error
from workflows.engine.validate.problem import Document, Problem, items, mapping, present, text
from workflows.engine.validate.variables import (
    ANY_OUTPUT_ARTIFACT,
    Globals,
    add_items,
    add_outputs,
    template_scope,
    unresolved_in,
)

WORKFLOW_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
TEMPLATE_KINDS = ("WorkflowTemplate", "ClusterWorkflowTemplate")
POD_GC_STRATEGIES = frozenset(
    {"", "OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"}
)
SELECTOR_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
CRON_LABEL = "workflows.argoproj.io/cron-workflow"
SCHEDULED_TIME_ANNOTATION = "workflows.argoproj.io/scheduled-time"


@dataclass(frozen=True)
class Options:
    """validate.Opts: `lint` lets workflow parameters go without values (`argo lint`)."""

    lint: bool = False
    template_validation: bool = False
    submit: bool = False


class Library:
    """The WorkflowTemplates (and ClusterWorkflowTemplates) a templateRef may name."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self.documents: dict[tuple[bool, str], list[Document]] = {}
        for document in documents:
            if document.kind in TEMPLATE_KINDS and document.name:
                cluster = document.kind == "ClusterWorkflowTemplate"
                self.documents.setdefault((cluster, document.name), []).append(document)

    def find(self, name: str, cluster: bool, near: str = "") -> Document | None:
        """The template of that name; given several (one per folder linted), the one in the
        same folder as `near`, the file that refers to it."""
        candidates = self.documents.get((cluster, name), [])
        folder = PurePath(near).parent
        same_folder = [d for d in candidates if near and PurePath(d.origin).parent == folder]
        found = same_folder or candidates
        return found[0] if found else None


@dataclass(frozen=True)
class Located:
    """A template and where it is: its document, its JSON path, its validate-once key."""

    document: Document
    template: Mapping[str, Any]
    path: str
    key: tuple[str, str] | None
    """None for an inline template: validated at each use, as it has no name to cache."""


def find_template(document: Document, name: str) -> Located | None:
    """The first template of that name (Argo's GetTemplateByName)."""
    for index, template in enumerate(items(document.spec.get("templates"))):
        if text(template.get("name")) == name:
            path = f"{document.spec_path}.templates[{index}]"
            return Located(document, template, path, (document.source, name))
    return None


def validate_document(document: Document, library: Library, options: Options) -> list[Problem]:
    """Every rule Argo applies to this manifest; [] when a controller would accept it."""
    kind = document.kind
    if kind not in WORKFLOW_KINDS:
        return [
            Problem(
                document.source, "kind", f"{kind!r} is not an Argo workflow kind", document.origin
            )
        ]
    problems: list[Problem] = []
    name = text(mapping(document.manifest.get("metadata")).get("name"))
    if kind == "CronWorkflow":
        spec = mapping(document.manifest.get("spec"))
        problems += [
            Problem(document.source, path, message, document.origin)
            for path, message in cron_problems(name, spec)
        ]
        options = Options()  # CronWorkflow() validates its workflow with validate.Opts{}
    else:
        error = object_name_error(kind, name)
        if error:
            problems.append(Problem(document.source, "metadata.name", error, document.origin))
    if kind in TEMPLATE_KINDS:
        options = Options(lint=options.lint, template_validation=True, submit=options.submit)
    problems += _Validation(document, library, options).run()
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    """The same template reached twice reports its problem once."""
    return list(dict.fromkeys(problems))


class _Validation:
    """templateValidationCtx: one manifest's validation, with its growing global names."""

    def __init__(self, document: Document, library: Library, options: Options) -> None:
        self.document = document
        self.library = library
        self.options = options
        self.globals = Globals(template_validation=options.template_validation)
        self.validated: set[tuple[str, str]] = set()
        self.problems: list[Problem] = []

    def report(self, document: Document, path: str, message: str) -> None:
        self.problems.append(Problem(document.source, path, message, document.origin))

    def run(self) -> list[Problem]:
        document, spec, base = self.document, self.document.spec, self.document.spec_path
        reference = spec.get("workflowTemplateRef")
        referenced: Document | None = None
        if reference is not None:
            if present(spec.get("templates")):
                self.report(
                    document,
                    f"{base}.templates",
                    "Templates is invalid field in spec if workflow referred WorkflowTemplate "
                    "reference",
                )
                return self.problems
            ref = mapping(reference)
            referenced = self.library.find(
                text(ref.get("name")), ref.get("clusterScope") is True, document.origin
            )
            if referenced is None:
                noun = (
                    "clusterworkflowtemplates" if ref.get("clusterScope") else "workflowtemplates"
                )
                self.report(
                    document,
                    f"{base}.workflowTemplateRef",
                    f'{noun}.argoproj.io "{text(ref.get("name"))}" not found',
                )
                return self.problems
        entrypoint = text(spec.get("entrypoint"))
        if referenced is not None and not entrypoint:
            entrypoint = text(referenced.spec.get("entrypoint"))
        for index, reason in named_list_errors(items(spec.get("templates")), parameters=False):
            self.report(document, f"{base}.templates[{index}]", reason)
        arguments = _merged_arguments(spec, referenced)
        allow_empty = self.options.lint or (
            self.options.template_validation and not self.options.submit
        )
        for path, message in argument_problems(
            arguments, f"{base}.arguments", allow_empty=allow_empty
        ):
            self.report(document, path, message)
        self._global_names(arguments, referenced)
        ignore_entrypoint = self.options.template_validation and not text(spec.get("entrypoint"))
        if not ignore_entrypoint and not entrypoint:
            self.report(document, f"{base}.entrypoint", "spec.entrypoint is required")
        elif not ignore_entrypoint:
            call_args = None if self.options.template_validation else arguments
            self.holder(
                self._holder(entrypoint, reference), f"{base}.entrypoint", document, call_args
            )
        on_exit = text(spec.get("onExit")) or (
            text(referenced.spec.get("onExit")) if referenced else ""
        )
        if on_exit:
            self.globals.names.add("workflow.failures")
            if self._parametrized_global_artifacts(referenced):
                self.globals.names.add(ANY_OUTPUT_ARTIFACT)
            own_arguments = mapping(spec.get("arguments"))
            self.holder(self._holder(on_exit, reference), f"{base}.onExit", document, own_arguments)
        for path, message in dag_rules.hook_problems(spec.get("hooks"), base):
            self.report(document, path, message)
        self._pod_gc(spec.get("podGC"), f"{base}.podGC")
        for path, message in rules.pod_resources_problems(spec, "podResources"):
            self.report(document, f"{base}.{path}", message)
        owner = referenced or document
        for template in items(owner.spec.get("templates")):
            name = text(template.get("name"))
            self.holder(
                self._holder(name, reference), f"{owner.spec_path}.templates", document, None
            )
        return self.problems

    def _holder(self, name: str, reference: object) -> Mapping[str, Any]:
        """A call of template `name`: by templateRef when the workflow runs a WorkflowTemplate."""
        if reference is None:
            return {"template": name}
        ref = mapping(reference)
        return {
            "templateRef": {
                "name": ref.get("name"),
                "template": name,
                "clusterScope": ref.get("clusterScope"),
            }
        }

    def _global_names(self, arguments: Mapping[str, Any], referenced: Document | None) -> None:
        names = {
            "workflow.name",
            "workflow.namespace",
            "workflow.mainEntrypoint",
            "workflow.serviceAccountName",
            "workflow.uid",
            "workflow.status",
            "workflow.annotations",
            "workflow.annotations.json",
            "workflow.labels",
            "workflow.labels.json",
        }
        parameters = items(arguments.get("parameters"))
        if parameters:
            names |= {"workflow.parameters", "workflow.parameters.json"}
        names |= {
            f"workflow.parameters.{text(p.get('name'))}" for p in parameters if text(p.get("name"))
        }
        labels, annotations = self._metadata_keys(referenced)
        names |= {f"workflow.labels.{key}" for key in labels}
        names |= {f"workflow.annotations.{key}" for key in annotations}
        if self.document.spec.get("priority") is not None:
            names.add("workflow.priority")
        self.globals.names |= names

    def _metadata_keys(self, referenced: Document | None) -> tuple[set[str], set[str]]:
        """Label and annotation keys the workflow will carry (workflow.labels.<key>)."""
        document = self.document
        meta = mapping(document.manifest.get("metadata"))
        if document.kind == "CronWorkflow":
            # ConvertCronWorkflowToWorkflow: the run gets the cron's workflowMetadata.
            cron_meta = mapping(mapping(document.manifest.get("spec")).get("workflowMetadata"))
            labels = {CRON_LABEL, *mapping(cron_meta.get("labels"))}
            annotations = {SCHEDULED_TIME_ANNOTATION, *mapping(cron_meta.get("annotations"))}
        else:
            labels, annotations = (
                set(mapping(meta.get("labels"))),
                set(mapping(meta.get("annotations"))),
            )
        for spec in (document.spec, referenced.spec if referenced else {}):
            workflow_meta = mapping(spec.get("workflowMetadata"))
            labels |= set(mapping(workflow_meta.get("labels"))) | set(
                mapping(workflow_meta.get("labelsFrom"))
            )
            annotations |= set(mapping(workflow_meta.get("annotations")))
        return labels, annotations

    def _parametrized_global_artifacts(self, referenced: Document | None) -> bool:
        owners = [self.document, *([referenced] if referenced else [])]
        return any(
            is_parameter(text(artifact.get("globalName")))
            for owner in owners
            for template in items(owner.spec.get("templates"))
            for artifact in items(mapping(template.get("outputs")).get("artifacts"))
        )

    def _pod_gc(self, pod_gc: object, path: str) -> None:
        if pod_gc is None:
            return
        strategy = text(mapping(pod_gc).get("strategy"))
        if strategy not in POD_GC_STRATEGIES:
            self.report(
                self.document, f"{path}.strategy", f"podGC.strategy unknown strategy '{strategy}'"
            )
        selector = mapping(mapping(pod_gc).get("labelSelector"))
        for index, expression in enumerate(items(selector.get("matchExpressions"))):
            operator, values = text(expression.get("operator")), expression.get("values") or []
            reason = None
            if operator not in SELECTOR_OPERATORS:
                reason = f'"{operator}" is not a valid label selector operator'
            elif operator in ("In", "NotIn") and not values:
                reason = "for 'in', 'notin' operators, values set can't be empty"
            elif operator in ("Exists", "DoesNotExist") and values:
                reason = "values set must be empty for exists and does not exist"
            if reason:
                self.report(
                    self.document,
                    f"{path}.labelSelector.matchExpressions[{index}]",
                    f"podGC.labelSelector invalid: {reason}",
                )

    # --- templates -----------------------------------------------------------------------

    def holder(
        self,
        holder: Mapping[str, Any],
        path: str,
        scope: Document,
        arguments: Mapping[str, Any] | None,
    ) -> Located | None:
        """validateTemplateHolder: resolve what a call runs, then validate it.

        `arguments` None stands for Argo's FakeArguments (every input supplied).
        """
        located = self.resolve(holder, path, scope)
        if located is None:
            return None
        for sub_path, message in rules.retry_policy_problems(located.template):
            self.report(located.document, f"{located.path}.{sub_path}", message)
        self.template(located, (scope, path), arguments)
        return located

    def resolve(self, holder: Mapping[str, Any], path: str, scope: Document) -> Located | None:
        reference, name = holder.get("templateRef"), text(holder.get("template"))
        if reference is not None:
            ref = mapping(reference)
            ref_name, ref_template = text(ref.get("name")), text(ref.get("template"))
            problem = None
            if name:
                problem = "template name cannot be specified with templateRef"
            elif not ref_name:
                problem = "resource name is required"
            elif not ref_template:
                problem = "template name is required"
            if problem:
                self.report(scope, f"{path}.templateRef", problem)
                return None
            if "{{" in ref_name + ref_template:
                return None  # resolved at run time: Argo only warns
            library_document = self.library.find(
                ref_name, ref.get("clusterScope") is True, scope.origin
            )
            located = find_template(library_document, ref_template) if library_document else None
            if located is None:
                self.report(
                    scope,
                    f"{path}.templateRef",
                    f"template reference {ref_name}.{ref_template} not found",
                )
            return located
        if name:
            located = find_template(scope, name)
            if located is None:
                self.report(scope, f"{path}.template", f"template name '{name}' undefined")
            return located
        inline = holder.get("inline")
        if inline is not None:
            return Located(scope, mapping(inline), f"{path}.inline", None)
        self.report(scope, path, "template or templateRef is required")
        return None

    def template(
        self, located: Located, call: tuple[Document, str], arguments: Mapping[str, Any] | None
    ) -> None:
        """validateTemplate: rules on the template itself, once; the call's arguments, always."""
        template, document, path = located.template, located.document, located.path
        name = text(template.get("name"))

        def report_all(found: Iterable[tuple[str, str]]) -> bool:
            reported = False
            for sub_path, message in found:
                self.report(document, f"{path}.{sub_path}".rstrip("."), message)
                reported = True
            return reported

        if report_all(rules.type_problems(template)):
            return
        report_all(rules.pod_resources_problems(template))
        if report_all(rules.input_problems(template)):
            return
        for index, container in enumerate(items(template.get("initContainers"))):
            if not text(container.get("name")):
                self.report(
                    document,
                    f"{path}.initContainers[{index}]",
                    "initContainers must all have container name",
                )
        for message in supply_problems(template, arguments):
            self.report(call[0], call[1], f"templates.{name} {message}")
        report_all(rules.resource_claim_problems(template))
        leaf = rules.is_leaf(template)
        report_all(rules.timeout_problems(template) if leaf else rules.non_leaf_problems(template))
        if located.key is not None:
            if located.key in self.validated:
                return
            self.validated.add(located.key)
        scope = template_scope(template, leaf, rules.is_pod(template))
        kind = rules.template_type(template)
        if kind == "dag":
            self.dag(located, scope)
        elif kind == "steps":
            self.steps(located, scope)
        else:
            defaults = mapping(document.spec.get("templateDefaults"))
            report_all(rules.leaf_problems(template, defaults))
            self.variables(document, template, path, scope)
        report_all(rules.output_problems(template))
        self.variables(document, template.get("outputs"), f"{path}.outputs", scope)
        archive = template.get("archiveLocation")
        if archive is not None:
            report_all(
                (f"archiveLocation.{p}", m) for p, m in rules.location_problems(mapping(archive))
            )
        report_all(rules.metric_problems(template.get("metrics")))

    def variables(self, document: Document, fragment: object, path: str, scope: set[str]) -> None:
        for where, message in unresolved_in(fragment, path, scope, self.globals):
            self.report(document, where, message)

    def dag(self, located: Located, scope: set[str]) -> None:
        """validateDAG: structure, then each task's references and the template it runs."""
        document, dag, path = (
            located.document,
            mapping(located.template.get("dag")),
            f"{located.path}.dag",
        )
        structural = list(dag_rules.dag_problems(dag))
        for sub_path, message in structural:
            self.report(document, f"{path}.{sub_path}", message)
        tasks = items(dag.get("tasks"))
        ordered, unsortable = dag_rules.sorted_tasks(tasks)
        if not tasks or unsortable:
            return
        paths = {id(task): f"{path}.tasks[{index}]" for index, task in enumerate(tasks)}
        by_name = {text(task.get("name")): task for task in tasks}
        targets: dict[str, Mapping[str, Any] | None] = {}
        for task in ordered:
            name = text(task.get("name"))
            target = self.holder(task, paths[id(task)], document, None)
            targets[name] = target.template if target else None
            add_outputs(
                scope,
                self.globals,
                "tasks",
                name,
                targets[name],
                aggregate=dag_rules.aggregates(task),
            )
        self.variables(document, dag.get("target"), f"{path}.target", scope)
        for task in ordered:
            name, task_path = text(task.get("name")), paths[id(task)]
            if task.get("hooks") is not None:
                scope.add(f"tasks.{name}.status")
            add_outputs(scope, self.globals, "tasks", name, targets[name], aggregate=False)
            task_scope = set(scope)
            lineage = dag_rules.ancestry(by_name, name)
            for ancestor in lineage:
                add_outputs(
                    task_scope,
                    self.globals,
                    "tasks",
                    ancestor,
                    targets.get(ancestor),
                    aggregate=dag_rules.aggregates(by_name[ancestor]),
                    ancestor=True,
                )
            task_scope |= _inline_inputs(task)
            error = add_items(task, task_scope)
            if error:
                self.report(document, task_path, error)
            self.variables(document, task, task_path, task_scope)
            arguments = mapping(task.get("arguments"))
            for found_path, message in argument_problems(
                arguments, f"{task_path}.arguments", allow_empty=False
            ):
                self.report(document, found_path, message)
            for found_path, message in dependency_problems(
                arguments, lineage, f"{task_path}.arguments"
            ):
                self.report(document, found_path, message)
            self.holder(task, task_path, document, arguments)

    def steps(self, located: Located, scope: set[str]) -> None:
        """validateSteps: steps see the steps before them, in order."""
        document, path = located.document, f"{located.path}.steps"
        groups = dag_rules.step_groups(located.template.get("steps"))
        for sub_path, message in dag_rules.step_name_problems(groups):
            self.report(document, f"{path}{sub_path}", message)
        for group_index, group in enumerate(groups):
            for step_index, step in enumerate(group):
                name, step_path = text(step.get("name")), f"{path}[{group_index}][{step_index}]"
                if not name:
                    continue
                scope.add(f"steps.{name}.status")
                error = add_items(step, scope)
                if error:
                    self.report(document, step_path, error)
                arguments = mapping(step.get("arguments"))
                for found_path, message in argument_problems(
                    arguments, f"{step_path}.arguments", allow_empty=False
                ):
                    self.report(document, found_path, message)
                target = self.holder(step, step_path, document, None)
                target_template = target.template if target else None
                if _has_exit_hook(step):
                    add_outputs(
                        scope, self.globals, "steps", name, target_template, aggregate=False
                    )
                self.variables(document, step, step_path, scope | _inline_inputs(step))
                aggregate = dag_rules.aggregates(step)
                add_outputs(
                    scope, self.globals, "steps", name, target_template, aggregate=aggregate
                )
                self.holder(step, step_path, document, arguments)


def _inline_inputs(call: Mapping[str, Any]) -> set[str]:
    inline = mapping(call.get("inline"))
    return {
        f"inputs.parameters.{text(p.get('name'))}"
        for p in items(mapping(inline.get("inputs")).get("parameters"))
    }


def _has_exit_hook(call: Mapping[str, Any]) -> bool:
    return "exit" in mapping(call.get("hooks")) or bool(text(call.get("onExit")))


def _merged_arguments(spec: Mapping[str, Any], referenced: Document | None) -> Mapping[str, Any]:
    """util.MergeParameters: the workflow's arguments, then the WorkflowTemplate's others."""
    own = mapping(spec.get("arguments"))
    if referenced is None:
        return own
    inherited = mapping(referenced.spec.get("arguments"))
    merged: dict[str, Any] = {}
    for kind in ("parameters", "artifacts"):
        entries = items(own.get(kind))
        names = {text(entry.get("name")) for entry in entries}
        entries += [
            entry for entry in items(inherited.get(kind)) if text(entry.get("name")) not in names
        ]
        if entries:
            merged[kind] = entries
    return merged
