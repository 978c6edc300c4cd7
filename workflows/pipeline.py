"""The training pipeline as Hera objects: one WorkflowTemplate and a Workflow that runs it.

audit -> provenance -> train (tracker daemon + N workers + model check) -> quantize
-> evaluate -> deploy. Each step's template and task come from its declaration
(steps/core/registry.py); what is written here is the pipeline itself: which steps, and
the edges between them (which task's output feeds which input). Small values travel as
parameters, files as S3 artifacts through the artifact repository named in the config.
Nothing here runs a step: the manifests do.
"""

import itertools
import re

from hera.workflows import (
    DAG,
    Artifact,
    EmptyDirVolume,
    Parameter,
    RetryStrategy,
    Task,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows import models as m

from steps.core.names import Artifact as StepArtifact
from steps.core.names import Param
from steps.core.registry import (
    AUDIT,
    DATASET_URI,
    DEPLOY,
    EVALUATE,
    MODEL_CARD,
    MODEL_CHECK,
    ONNX_DIGEST,
    PORT,
    PROVENANCE,
    QUANTIZE,
    RANK,
    SHARDS,
    TRACKER,
    TRACKER_HOST,
    TRACKER_PORT,
    TRAIN,
    TRAIN_SPEC,
    WORKER_OUTPUTS,
    WORKERS,
    Input,
    StepDef,
)
from workflows.config import LoadedConfig
from workflows.exit_handler import EXIT_TEMPLATE, summary_template
from workflows.parameters import (
    CODE_VERSION,
    CONFIG_DIGEST,
    WORKER_RANKS,
    code_version,
    workflow_arguments,
)
from workflows.step_task import dag_input, output, output_artifact, step_task, workflow_parameter
from workflows.step_template import WORK_VOLUME, pod_security, step_container

TEMPLATE_NAME = "mlpipe-training"
ENTRYPOINT = "pipeline"
TRAIN_GROUP = "train"
MANUAL_TRIGGER = "manual"
ARTIFACT_GC_ACCOUNT = "mlpipe-artifact-gc"
"""Runs Argo's artifact GC pods; `mlpipe install` gives it the workflowartifactgctasks rights."""
RUN_TTL_SECONDS = 7 * 24 * 3600
"""Finished runs are deleted after a week, their run-scoped artifacts with them (artifactGC);
deployed models live on in the registry, the training cache's artifacts as below."""

STEPS: tuple[StepDef, ...] = (
    AUDIT,
    PROVENANCE,
    TRACKER,
    TRAIN,
    MODEL_CHECK,
    QUANTIZE,
    EVALUATE,
    MODEL_CARD,
    DEPLOY,
)
"""The pipeline's steps in DAG order: their templates, in this order, and their workflow
inputs make the WorkflowTemplate's parameters."""

DATASET_DIGEST = Input("dataset-digest", str, "the dataset's digest: the training cache key")
"""The training group's own input: it runs no step, it keys the group's memoization."""
DAG_PARAMETERS = (WORKER_RANKS,)
"""Workflow parameters the pipeline's own DAGs read (the training group's fan-out)."""


def pipeline_arguments(config: LoadedConfig) -> dict[str, str]:
    """The training run's parameter values: its steps' workflow inputs and its DAGs'."""
    return workflow_arguments(config, STEPS, DAG_PARAMETERS)


class TaskName:
    """DAG task names: the node names a user sees in the Argo UI and in `mlpipe run`."""

    AUDIT = AUDIT.name.value
    PROVENANCE = PROVENANCE.name.value
    TRAIN = TRAIN_GROUP
    TRACKER = TRACKER.name.value
    WORKER = "worker"
    MODEL_CHECK = MODEL_CHECK.name.value
    QUANTIZE = QUANTIZE.name.value
    EVALUATE = EVALUATE.name.value
    MODEL_CARD = MODEL_CARD.name.value
    DEPLOY = DEPLOY.name.value


def train_memoize(config: LoadedConfig) -> m.Memoize | None:
    """The training group's cache entry: same dataset, same specs, same code, same model.

    The key uses only letters, digits and dashes, as Argo requires of a ConfigMap cache key.
    """
    pipeline = config.pipeline
    if not pipeline.provenance.memoize:
        return None
    parts = [
        dag_input(DATASET_DIGEST.name),
        workflow_parameter(CONFIG_DIGEST),
        workflow_parameter(CODE_VERSION),
    ]
    return m.Memoize(
        key="-".join([TRAIN_GROUP, *parts]),
        max_age=pipeline.provenance.memoize_max_age,
        cache=m.Cache(config_map=m.LocalObjectReference(name=pipeline.argo.memoize_cache)),
    )


def label_value(text: str) -> str:
    """A Kubernetes label value (63 characters at most, alphanumeric at both ends): the
    tail, which for an image by digest is the digest."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[-63:].strip("-_.")


def run_labels(config: LoadedConfig, trigger: str) -> dict[str, str]:
    """Labels of a run (a Workflow, or a CronWorkflow's workflowMetadata): what `mlpipe list`
    and the Argo UI filter on. The dataset digest is not among them: it is computed by the
    provenance step, after the Workflow object exists (`mlpipe list` reads it from there)."""
    return {
        "app.kubernetes.io/name": "mlpipe",
        "mlpipe/model": config.pipeline.model_name,
        "mlpipe/trigger": trigger,
        "mlpipe/code-version": label_value(code_version(config)),
    }


def run_annotations(config: LoadedConfig, trigger: str) -> dict[str, str]:
    """The Argo UI's title and description of a run."""
    pipeline = config.pipeline
    return {
        "workflows.argoproj.io/title": f"Train {pipeline.model_name} ({trigger})",
        "workflows.argoproj.io/description": (
            f"model: {pipeline.model_name}\n"
            f"data: {pipeline.data.uri} (dataset digest: see the provenance step)\n"
            f"code version: {code_version(config)} (image {pipeline.argo.steps_image})\n"
            f"trigger: {trigger}"
        ),
    }


def _chain(*tasks: Task) -> None:
    """Each task depends on the one before it."""
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream


def build_template(config: LoadedConfig) -> WorkflowTemplate:
    pipeline = config.pipeline
    tracker_port = str(pipeline.train.tracker_port)
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        namespace=pipeline.argo.namespace,
        entrypoint=ENTRYPOINT,
        labels={
            "app.kubernetes.io/name": "mlpipe",
            "mlpipe/model": pipeline.model_name,
            "mlpipe/code-version": label_value(code_version(config)),
        },
        annotations={
            "workflows.argoproj.io/title": f"mlpipe training: {pipeline.model_name}",
            "workflows.argoproj.io/description": (
                "audit -> provenance -> distributed XGBoost -> ONNX -> evaluate -> deploy\n"
                f"model: {pipeline.model_name}; code version: {code_version(config)} "
                f"(image {pipeline.argo.steps_image}); dataset digest: per run (provenance step)"
            ),
        },
        arguments=[
            Parameter(name=name, value=value) for name, value in pipeline_arguments(config).items()
        ],
        service_account_name=pipeline.argo.service_account,
        security_context=pod_security(),
        volumes=[EmptyDirVolume(name=WORK_VOLUME)],
        active_deadline_seconds=pipeline.argo.active_deadline_seconds,
        artifact_repository_ref=m.ArtifactRepositoryRef(
            config_map=pipeline.argo.artifact_repository.config_map,
            key=pipeline.argo.artifact_repository.key,
        ),
        pod_gc=m.PodGC(strategy="OnPodSuccess", delete_delay_duration="10m"),
        artifact_gc=m.WorkflowLevelArtifactGC(
            strategy="OnWorkflowDeletion", service_account_name=ARTIFACT_GC_ACCOUNT
        ),
        ttl_strategy=m.TTLStrategy(seconds_after_completion=RUN_TTL_SECONDS),
        # Logs go to the artifact repository whatever the controller's default: the run
        # summary and `mlpipe logs` after pod GC both rely on them.
        archive_logs=True,
        on_exit=EXIT_TEMPLATE,
        pod_metadata=m.Metadata(
            labels={"app.kubernetes.io/name": "mlpipe", "mlpipe/model": pipeline.model_name}
        ),
    ) as template:
        templates = {
            step.name: step_container(
                step, config, readiness_port=int(tracker_port) if step is TRACKER else None
            )
            for step in STEPS
        }
        # The training cache's entry points at these: a later run's cache hit reads them, so
        # deleting their run (ttlStrategy) must not delete them (artifactGC: Never).
        cached = {StepArtifact.MODEL.name, StepArtifact.LEARNING_CURVE.name}
        outputs = templates[MODEL_CHECK.name].outputs
        for declared in outputs if isinstance(outputs, list) else []:
            if isinstance(declared, Artifact) and declared.name in cached:
                declared.artifact_gc = m.ArtifactGC(strategy="Never")
        # One rollout of a model at a time, whichever run (manual or scheduled) it is part of.
        templates[DEPLOY.name].synchronization = m.Synchronization(
            mutexes=[m.Mutex(name=f"mlpipe-deploy-{pipeline.model_name}")]
        )
        summary_template(config, [step.template_name for step in STEPS])
        train_group = _train_group(config, tracker_port)
        with DAG(name=ENTRYPOINT):
            dataset_uri = {DATASET_URI: output(TaskName.PROVENANCE, Param.DATASET_URI)}
            model = {StepArtifact.MODEL: TaskName.TRAIN}
            onnx = {StepArtifact.ONNX: TaskName.QUANTIZE}
            _chain(
                step_task(AUDIT),
                step_task(PROVENANCE, values={SHARDS: workflow_parameter(WORKERS.name)}),
                Task(
                    name=TaskName.TRAIN,
                    template=train_group,
                    arguments=[
                        Parameter(name=DATASET_URI.name, value=dataset_uri[DATASET_URI]),
                        Parameter(
                            name=DATASET_DIGEST.name,
                            value=output(TaskName.PROVENANCE, Param.DATASET_DIGEST),
                        ),
                        Parameter(name=TRAIN_SPEC.name, value=workflow_parameter(TRAIN_SPEC.name)),
                        Parameter(name=WORKERS.name, value=workflow_parameter(WORKERS.name)),
                        Parameter(name=WORKER_RANKS, value=workflow_parameter(WORKER_RANKS)),
                    ],
                ),
                step_task(QUANTIZE, values=dataset_uri, artifacts=model),
                step_task(EVALUATE, values=dataset_uri, artifacts={**onnx, **model}),
                step_task(
                    MODEL_CARD,
                    artifacts={
                        StepArtifact.AUDIT_RESULT: TaskName.AUDIT,
                        StepArtifact.PROVENANCE: TaskName.PROVENANCE,
                        **model,
                        StepArtifact.QUANTIZE_REPORT: TaskName.QUANTIZE,
                        StepArtifact.EVALUATION: TaskName.EVALUATE,
                    },
                ),
                step_task(
                    DEPLOY,
                    values={
                        ONNX_DIGEST: output(TaskName.QUANTIZE, Param.ONNX_DIGEST),
                        **dataset_uri,
                    },
                    artifacts={**onnx, **model, StepArtifact.EVALUATION: TaskName.EVALUATE},
                ),
            )
    return template


def _train_group(config: LoadedConfig, tracker_port: str) -> DAG:
    """Tracker and workers form one collective, then the model check: one DAG, memoized
    and retried as a whole."""
    inputs = [item.name for item in (DATASET_URI, DATASET_DIGEST, TRAIN_SPEC, WORKERS)]
    inputs.append(WORKER_RANKS)
    with DAG(
        name=TRAIN_GROUP,
        inputs=[Parameter(name=name) for name in inputs],
        memoize=train_memoize(config),
        outputs=[
            Parameter(
                name=param.value,
                value_from=m.ValueFrom(parameter=output(TaskName.MODEL_CHECK, param)),
            )
            for param in MODEL_CHECK.outputs
        ]
        + [
            Artifact(name=artifact.name, from_=output_artifact(TaskName.MODEL_CHECK, artifact))
            for artifact in MODEL_CHECK.artifacts
        ],
        # Tracker and workers form one collective: a lost worker fails them all, so the
        # whole group is what gets retried. The retry's tracker is a new pod binding its
        # own new IP, so no port of the failed attempt (in TCP TIME_WAIT) is in its way; a
        # few seconds let the failed pods' processes go, and a lost node's replacement
        # is waited for anyway, by the retried pods in Pending.
        retry_strategy=RetryStrategy(
            limit=1, retry_policy="Always", backoff=m.Backoff(duration="5s")
        ),
    ) as group:
        scope = inputs
        _chain(
            step_task(TRACKER, values={PORT: tracker_port}, dag_inputs=scope),
            step_task(
                TRAIN,
                name=TaskName.WORKER,
                values={
                    RANK: "{{item}}",
                    TRACKER_HOST: f"{{{{tasks.{TaskName.TRACKER}.ip}}}}",
                    TRACKER_PORT: tracker_port,
                },
                dag_inputs=scope,
                with_param=dag_input(WORKER_RANKS),
            ),
            step_task(
                MODEL_CHECK,
                values={WORKER_OUTPUTS: f"{{{{tasks.{TaskName.WORKER}.outputs.parameters}}}}"},
            ),
        )
    return group


def build_workflow(config: LoadedConfig) -> Workflow:
    """A run of the template with this config's values: what `submit` and `run` execute."""
    pipeline = config.pipeline
    return Workflow(
        generate_name=f"{pipeline.model_name}-training-",
        namespace=pipeline.argo.namespace,
        labels=run_labels(config, MANUAL_TRIGGER),
        annotations=run_annotations(config, MANUAL_TRIGGER),
        workflow_template_ref=m.WorkflowTemplateRef(name=TEMPLATE_NAME),
        # The template sets these too; stating them on the run itself keeps them whatever
        # the cluster's workflow defaults say (checkov CKV_ARGO_1/2 read the Workflow alone).
        service_account_name=pipeline.argo.service_account,
        security_context=pod_security(),
        arguments=[
            Parameter(name=name, value=value) for name, value in pipeline_arguments(config).items()
        ],
    )
