"""A DAG task from a step's declaration: its arguments are its inputs, in order.

Each input takes its value from, in turn: the edge the pipeline gives it
(workflows/pipeline.py), the enclosing DAG's input of the same name, or else, for a workflow
input, the workflow parameter of the same name. Each input artifact comes from the task the
pipeline names for it. An input or artifact nothing feeds is an error when the pipeline is
built, naming the step, rather than a pod that cannot start.
"""

from collections.abc import Collection, Mapping
from typing import Any

from hera.workflows import Artifact, Parameter, Task

from steps.core.names import ArtifactName, Param
from steps.core.registry import Input, Origin, StepDef


def output(task: str, param: Param) -> str:
    """An upstream task's output parameter."""
    return f"{{{{tasks.{task}.outputs.parameters.{param.value}}}}}"


def output_artifact(task: str, artifact: ArtifactName) -> str:
    return f"{{{{tasks.{task}.outputs.artifacts.{artifact.name}}}}}"


def workflow_parameter(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def dag_input(name: str) -> str:
    return f"{{{{inputs.parameters.{name}}}}}"


def step_task(
    step: StepDef,
    *,
    name: str | None = None,
    values: Mapping[Input[Any], str] | None = None,
    artifacts: Mapping[ArtifactName, str] | None = None,
    dag_inputs: Collection[str] = (),
    **options: Any,
) -> Task:
    """The task running the step's template, named after the step unless `name` says
    otherwise; `values` are the edges into its inputs, `artifacts` the task each input
    artifact comes from, `dag_inputs` the enclosing DAG's inputs; `options` go to the Task."""
    values, artifacts = values or {}, artifacts or {}
    unknown = {item.name for item in values} - {item.name for item in step.inputs}
    unknown |= {a.name for a in artifacts} - {a.name for a in step.input_artifacts}
    if unknown:
        raise ValueError(f"step {step.name} has no input {', '.join(sorted(unknown))}")
    given = {item.name: value for item, value in values.items()}
    arguments: list[Parameter | Artifact] = []
    for item in step.inputs:
        arguments.append(Parameter(name=item.name, value=_value(step, item, given, dag_inputs)))
    for artifact in step.input_artifacts:
        if artifact not in artifacts:
            raise ValueError(f"step {step.name}: no task gives its {artifact.name} artifact")
        arguments.append(
            Artifact(name=artifact.name, from_=output_artifact(artifacts[artifact], artifact))
        )
    return Task(
        name=name or step.name.value, template=step.template_name, arguments=arguments, **options
    )


def _value(
    step: StepDef, item: Input[Any], given: Mapping[str, str], dag_inputs: Collection[str]
) -> str:
    if item.name in given:
        return given[item.name]
    if item.name in dag_inputs:
        return dag_input(item.name)
    if item.origin is Origin.WORKFLOW:
        return workflow_parameter(item.name)
    raise ValueError(f"step {step.name}: nothing gives its input {item.name!r}")
