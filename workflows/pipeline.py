"""The training pipeline as Hera objects: one WorkflowTemplate and a Workflow that runs it.

audit -> provenance -> train (tracker daemon + N workers + model check) -> quantize
-> evaluate -> deploy. Small values travel as parameters, files as S3 artifacts through the
artifact repository named in the config. Nothing here runs a step: the manifests do.
"""

import hashlib
import itertools
import json
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
from steps.core.names import Param, Step
from workflows.config import LoadedConfig
from workflows.exit_handler import EXIT_TEMPLATE, summary_template
from workflows.parameters import StepInput, WorkflowParam
from workflows.step_template import (
    WORK_VOLUME,
    Attestation,
    ImageSettings,
    pod_security,
    step_container,
)

TEMPLATE_NAME = "mlpipe-training"
ENTRYPOINT = "pipeline"
TRAIN_GROUP = "train"
MANUAL_TRIGGER = "manual"
ARTIFACT_GC_ACCOUNT = "mlpipe-artifact-gc"
"""Runs Argo's artifact GC pods; `mlpipe install` gives it the workflowartifactgctasks rights."""
RUN_TTL_SECONDS = 7 * 24 * 3600
"""Finished runs are deleted after a week, their run-scoped artifacts with them (artifactGC);
deployed models live on in the registry, the training cache's artifacts as below."""


class TaskName:
    """DAG task names: the node names a user sees in the Argo UI and in `mlpipe run`."""

    AUDIT = "audit"
    PROVENANCE = "provenance"
    TRAIN = TRAIN_GROUP
    TRACKER = "tracker"
    WORKER = "worker"
    MODEL_CHECK = "model-check"
    QUANTIZE = "quantize"
    EVALUATE = "evaluate"
    DEPLOY = "deploy"


def workflow_arguments(config: LoadedConfig) -> dict[WorkflowParam, str]:
    """The run's parameter values, each step spec serialised as the JSON its step parses."""
    pipeline = config.pipeline
    values = {
        WorkflowParam.DATA_URI: pipeline.data.uri,
        WorkflowParam.DATA_SPEC: pipeline.data.spec().model_dump_json(),
        WorkflowParam.AUDIT_SPEC: config.audit_spec().model_dump_json(),
        WorkflowParam.TRAIN_SPEC: pipeline.train.model_dump_json(),
        WorkflowParam.QUANTIZE_SPEC: pipeline.quantize.model_dump_json(),
        WorkflowParam.EVALUATE_SPEC: config.evaluate_spec().model_dump_json(),
        WorkflowParam.DEPLOY_SPEC: config.deploy_spec().model_dump_json(),
        WorkflowParam.MODEL_NAME: pipeline.model_name,
        WorkflowParam.WORKERS: str(pipeline.train.workers),
        WorkflowParam.WORKER_RANKS: worker_ranks(pipeline.train.workers),
    }
    values[WorkflowParam.CONFIG_DIGEST] = config_digest(values)
    values[WorkflowParam.CODE_VERSION] = code_version(config)
    return values


def worker_ranks(workers: int) -> str:
    return json.dumps([str(rank) for rank in range(workers)], separators=(",", ":"))


def code_version(config: LoadedConfig) -> str:
    """The code version the provenance chain records: configured, else the steps image."""
    pipeline = config.pipeline
    return pipeline.provenance.code_version or re.sub(
        r"[^a-zA-Z0-9]+", "-", pipeline.argo.steps_image
    )


def config_digest(values: dict[WorkflowParam, str]) -> str:
    """SHA-256 of what decides the results: every spec, not where the data is (the data is
    keyed by its dataset digest) nor the tracker's port (a local run picks a free one)."""
    specs: dict[str, object] = {
        name.value: value for name, value in values.items() if name is not WorkflowParam.DATA_URI
    }
    train = json.loads(values[WorkflowParam.TRAIN_SPEC])
    train.pop("tracker_port", None)
    specs[WorkflowParam.TRAIN_SPEC.value] = train
    return hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()


def attestation(config: LoadedConfig) -> Attestation:
    provenance = config.pipeline.provenance
    return Attestation(
        key_format=config.pipeline.storage.key_format,
        signing_secret=provenance.signing_secret if provenance.signing else None,
    )


def train_memoize(config: LoadedConfig) -> m.Memoize | None:
    """The training group's cache entry: same dataset, same specs, same code, same model.

    The key uses only letters, digits and dashes, as Argo requires of a ConfigMap cache key.
    """
    pipeline = config.pipeline
    if not pipeline.provenance.memoize:
        return None
    parts = [
        f"{{{{inputs.parameters.{StepInput.DATASET_DIGEST.value}}}}}",
        _workflow_param(WorkflowParam.CONFIG_DIGEST),
        _workflow_param(WorkflowParam.CODE_VERSION),
    ]
    return m.Memoize(
        key="-".join([TRAIN_GROUP, *parts]),
        max_age=pipeline.provenance.memoize_max_age,
        cache=m.Cache(config_map=m.LocalObjectReference(name=pipeline.argo.memoize_cache)),
    )


def image_settings(config: LoadedConfig) -> ImageSettings:
    pipeline = config.pipeline
    return ImageSettings(
        image=pipeline.argo.steps_image,
        bucket=pipeline.storage.bucket,
        region=pipeline.storage.region,
        credentials_secret=pipeline.storage.credentials_secret,
        cpu=pipeline.argo.step_cpu,
        memory=pipeline.argo.step_memory,
        service_account=pipeline.argo.service_account,
        deadline_seconds=pipeline.argo.step_deadline_seconds,
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


def _ref(task: str, kind: str, name: str) -> str:
    return f"{{{{tasks.{task}.outputs.{kind}.{name}}}}}"


def _workflow_param(name: WorkflowParam) -> str:
    return f"{{{{workflow.parameters.{name.value}}}}}"


def _chain(*tasks: Task) -> None:
    """Each task depends on the one before it."""
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream


def build_template(config: LoadedConfig) -> WorkflowTemplate:
    settings = image_settings(config)
    attest = attestation(config)
    pipeline = config.pipeline
    tracker_port = pipeline.train.tracker_port
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
            Parameter(name=name.value, value=value)
            for name, value in workflow_arguments(config).items()
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
        audit = step_container(
            "audit",
            Step.AUDIT,
            settings,
            inputs=[
                WorkflowParam.DATA_URI,
                WorkflowParam.DATA_SPEC,
                WorkflowParam.AUDIT_SPEC,
                WorkflowParam.MODEL_NAME,
            ],
            output_parameters=[Param.PASSED, Param.ROWS, Param.CRITICAL_FAILURES, Param.WARNINGS],
            output_artifacts=[StepArtifact.AUDIT_REPORT, StepArtifact.AUDIT_RESULT],
            attestation=attest,
        )
        provenance = step_container(
            "provenance",
            Step.PROVENANCE,
            settings,
            inputs=[WorkflowParam.DATA_URI, WorkflowParam.DATA_SPEC, StepInput.SHARDS],
            output_parameters=[Param.DATASET_DIGEST, Param.DATASET_URI, Param.ROWS],
            output_artifacts=[StepArtifact.PROVENANCE],
            attestation=attest,
        )
        tracker = step_container(
            "tracker",
            Step.TRACKER,
            settings,
            # The train spec's timeout_seconds bounds the tracker's waits as the workers'.
            inputs=[WorkflowParam.WORKERS, StepInput.PORT, WorkflowParam.TRAIN_SPEC],
            writes_outputs=False,
            daemon=True,
            readiness_port=tracker_port,
        )
        worker = step_container(
            "train-worker",
            Step.TRAIN,
            settings,
            inputs=[
                StepInput.DATASET_URI,
                WorkflowParam.TRAIN_SPEC,
                StepInput.RANK,
                StepInput.TRACKER_HOST,
                StepInput.TRACKER_PORT,
            ],
            output_parameters=[Param.MODEL_DIGEST, Param.BEST_ITERATION, Param.VALID_AUC],
            attestation=attest,
            # The request and XGBoost's nthread come from the one key (train.cpu): a worker
            # never runs more threads than it has cores, nor idles cores it asked for.
            cpu=str(pipeline.train.cpu),
        )
        model_check = step_container(
            "model-check",
            Step.MODEL_CHECK,
            settings,
            inputs=[StepInput.WORKER_OUTPUTS],
            output_parameters=[Param.MODEL_DIGEST, Param.BEST_ITERATION, Param.VALID_AUC],
            output_artifacts=[StepArtifact.MODEL, StepArtifact.LEARNING_CURVE],
        )
        # The training cache's entry points at these: a later run's cache hit reads them, so
        # deleting their run (ttlStrategy) must not delete them (artifactGC: Never).
        cached = {StepArtifact.MODEL.name, StepArtifact.LEARNING_CURVE.name}
        outputs = model_check.outputs
        for output in outputs if isinstance(outputs, list) else []:
            if isinstance(output, Artifact) and output.name in cached:
                output.artifact_gc = m.ArtifactGC(strategy="Never")
        quantize = step_container(
            "quantize",
            Step.QUANTIZE,
            settings,
            inputs=[StepInput.DATASET_URI, WorkflowParam.QUANTIZE_SPEC],
            input_artifacts=[StepArtifact.MODEL],
            output_parameters=[Param.ONNX_DIGEST, Param.PARITY_MAX_DIFF, Param.ENCODING],
            output_artifacts=[
                StepArtifact.ONNX,
                StepArtifact.QUANTIZE_REPORT,
                StepArtifact.QUANTIZE_REPORT_HTML,
            ],
            attestation=attest,
        )
        evaluate = step_container(
            "evaluate",
            Step.EVALUATE,
            settings,
            inputs=[StepInput.DATASET_URI, WorkflowParam.MODEL_NAME, WorkflowParam.EVALUATE_SPEC],
            input_artifacts=[StepArtifact.ONNX, StepArtifact.MODEL],
            output_parameters=[
                Param.AUC,
                Param.WORST_SLICE,
                Param.WORST_SLICE_AUC,
                Param.ECE,
                Param.GATE,
            ],
            output_artifacts=[StepArtifact.EVALUATION, StepArtifact.EVALUATION_REPORT],
            attestation=attest,
        )
        deploy = step_container(
            "deploy",
            Step.DEPLOY,
            settings,
            inputs=[
                StepInput.ONNX_DIGEST,
                StepInput.DATASET_URI,
                WorkflowParam.MODEL_NAME,
                WorkflowParam.DEPLOY_SPEC,
            ],
            input_artifacts=[StepArtifact.ONNX, StepArtifact.MODEL, StepArtifact.EVALUATION],
            output_parameters=[Param.DEPLOYED_DIGEST, Param.ENDPOINT],
            output_artifacts=[StepArtifact.ROLLOUT, StepArtifact.ROLLOUT_REPORT],
            attestation=attest,
            # Its own identity: rights to roll a model out never reach the other steps.
            service_account=pipeline.argo.deploy_service_account,
        )
        # One rollout of a model at a time, whichever run (manual or scheduled) it is part of.
        deploy.synchronization = m.Synchronization(
            mutexes=[m.Mutex(name=f"mlpipe-deploy-{pipeline.model_name}")]
        )
        in_order = (audit, provenance, tracker, worker, model_check, quantize, evaluate, deploy)
        summary_template(config, settings, [str(t.name) for t in in_order])

        with DAG(
            name=TRAIN_GROUP,
            inputs=[
                Parameter(name=StepInput.DATASET_URI),
                Parameter(name=StepInput.DATASET_DIGEST),
                Parameter(name=WorkflowParam.TRAIN_SPEC),
                Parameter(name=WorkflowParam.WORKERS),
                Parameter(name=WorkflowParam.WORKER_RANKS),
            ],
            memoize=train_memoize(config),
            outputs=[
                Parameter(
                    name=param.value,
                    value_from=m.ValueFrom(
                        parameter=_ref(TaskName.MODEL_CHECK, "parameters", param.value)
                    ),
                )
                for param in (Param.MODEL_DIGEST, Param.BEST_ITERATION, Param.VALID_AUC)
            ]
            + [
                Artifact(
                    name=artifact.name,
                    from_=_ref(TaskName.MODEL_CHECK, "artifacts", artifact.name),
                )
                for artifact in (StepArtifact.MODEL, StepArtifact.LEARNING_CURVE)
            ],
            # Tracker and workers form one collective: a lost worker fails them all, so the
            # whole group is what gets retried. After a minute: the tracker's port leaves
            # TCP TIME_WAIT (60 s) by then, which matters where the retried tracker binds it
            # on the same host (the local engine), and a lost node has time to be replaced.
            retry_strategy=RetryStrategy(
                limit=1, retry_policy="Always", backoff=m.Backoff(duration="60s")
            ),
        ) as train_group:
            tracker_task = Task(
                name=TaskName.TRACKER,
                template=tracker,
                arguments={
                    WorkflowParam.WORKERS.value: "{{inputs.parameters.workers}}",
                    StepInput.PORT.value: str(tracker_port),
                    WorkflowParam.TRAIN_SPEC.value: "{{inputs.parameters.train-spec}}",
                },
            )
            worker_task = Task(
                name=TaskName.WORKER,
                template=worker,
                with_param="{{inputs.parameters.worker-ranks}}",
                arguments={
                    StepInput.DATASET_URI.value: "{{inputs.parameters.dataset-uri}}",
                    WorkflowParam.TRAIN_SPEC.value: "{{inputs.parameters.train-spec}}",
                    StepInput.RANK.value: "{{item}}",
                    StepInput.TRACKER_HOST.value: f"{{{{tasks.{TaskName.TRACKER}.ip}}}}",
                    StepInput.TRACKER_PORT.value: str(tracker_port),
                },
            )
            check_task = Task(
                name=TaskName.MODEL_CHECK,
                template=model_check,
                arguments={
                    StepInput.WORKER_OUTPUTS.value: (
                        f"{{{{tasks.{TaskName.WORKER}.outputs.parameters}}}}"
                    )
                },
            )
            _chain(tracker_task, worker_task, check_task)

        with DAG(name=ENTRYPOINT):
            dataset_uri = _ref(TaskName.PROVENANCE, "parameters", Param.DATASET_URI.value)
            audit_task = Task(
                name=TaskName.AUDIT,
                template=audit,
                arguments={
                    p.value: _workflow_param(p)
                    for p in (
                        WorkflowParam.DATA_URI,
                        WorkflowParam.DATA_SPEC,
                        WorkflowParam.AUDIT_SPEC,
                        WorkflowParam.MODEL_NAME,
                    )
                },
            )
            provenance_task = Task(
                name=TaskName.PROVENANCE,
                template=provenance,
                arguments={
                    WorkflowParam.DATA_URI.value: _workflow_param(WorkflowParam.DATA_URI),
                    WorkflowParam.DATA_SPEC.value: _workflow_param(WorkflowParam.DATA_SPEC),
                    StepInput.SHARDS.value: _workflow_param(WorkflowParam.WORKERS),
                },
            )
            train_task = Task(
                name=TaskName.TRAIN,
                template=train_group,
                arguments={
                    StepInput.DATASET_URI.value: dataset_uri,
                    StepInput.DATASET_DIGEST.value: _ref(
                        TaskName.PROVENANCE, "parameters", Param.DATASET_DIGEST.value
                    ),
                    WorkflowParam.TRAIN_SPEC.value: _workflow_param(WorkflowParam.TRAIN_SPEC),
                    WorkflowParam.WORKERS.value: _workflow_param(WorkflowParam.WORKERS),
                    WorkflowParam.WORKER_RANKS.value: _workflow_param(WorkflowParam.WORKER_RANKS),
                },
            )
            model_artifact = Artifact(
                name=StepArtifact.MODEL.name,
                from_=_ref(TaskName.TRAIN, "artifacts", StepArtifact.MODEL.name),
            )
            onnx_artifact = Artifact(
                name=StepArtifact.ONNX.name,
                from_=_ref(TaskName.QUANTIZE, "artifacts", StepArtifact.ONNX.name),
            )
            quantize_task = Task(
                name=TaskName.QUANTIZE,
                template=quantize,
                arguments=[
                    Parameter(name=StepInput.DATASET_URI.value, value=dataset_uri),
                    Parameter(
                        name=WorkflowParam.QUANTIZE_SPEC.value,
                        value=_workflow_param(WorkflowParam.QUANTIZE_SPEC),
                    ),
                    model_artifact,
                ],
            )
            evaluate_task = Task(
                name=TaskName.EVALUATE,
                template=evaluate,
                arguments=[
                    Parameter(name=StepInput.DATASET_URI.value, value=dataset_uri),
                    Parameter(
                        name=WorkflowParam.MODEL_NAME.value,
                        value=_workflow_param(WorkflowParam.MODEL_NAME),
                    ),
                    Parameter(
                        name=WorkflowParam.EVALUATE_SPEC.value,
                        value=_workflow_param(WorkflowParam.EVALUATE_SPEC),
                    ),
                    onnx_artifact,
                    model_artifact,
                ],
            )
            deploy_task = Task(
                name=TaskName.DEPLOY,
                template=deploy,
                arguments=[
                    Parameter(
                        name=StepInput.ONNX_DIGEST.value,
                        value=_ref(TaskName.QUANTIZE, "parameters", Param.ONNX_DIGEST.value),
                    ),
                    Parameter(name=StepInput.DATASET_URI.value, value=dataset_uri),
                    Parameter(
                        name=WorkflowParam.MODEL_NAME.value,
                        value=_workflow_param(WorkflowParam.MODEL_NAME),
                    ),
                    Parameter(
                        name=WorkflowParam.DEPLOY_SPEC.value,
                        value=_workflow_param(WorkflowParam.DEPLOY_SPEC),
                    ),
                    onnx_artifact,
                    model_artifact,
                    Artifact(
                        name=StepArtifact.EVALUATION.name,
                        from_=_ref(TaskName.EVALUATE, "artifacts", StepArtifact.EVALUATION.name),
                    ),
                ],
            )
            _chain(
                audit_task, provenance_task, train_task, quantize_task, evaluate_task, deploy_task
            )
    return template


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
            Parameter(name=name.value, value=value)
            for name, value in workflow_arguments(config).items()
        ],
    )
