"""Manifest fields the local engine accepts without acting on them, and fields it refuses.

This is the one place that decides what "accepted, no local effect" means: each entry names
the object (the model class in `model.py`), the field and why ignoring it locally changes
nothing about what the steps compute. A field in neither table nor in the models is refused
by the strict check with its full path (see `model.py`).
"""

from collections.abc import Mapping
from typing import Final

_POD_SCHEDULING = "pod placement on cluster nodes; locally every task runs on this machine"
_RESOURCES = "CPU/memory requests and limits enforced by the kubelet"
_POD_SPEC = "patches the pod spec, which cannot be honoured by a local process"
_STORAGE = "storage other than the artifact repository (the embedded S3 bucket)"

NO_LOCAL_EFFECT: Final[Mapping[str, Mapping[str, str]]] = {
    "WorkflowSpec": {
        "automountServiceAccountToken": "Kubernetes API token mounting in pods",
        "securityContext": "pod security settings enforced by the kubelet",
        "podGC": "deleting finished pods; local processes leave nothing behind",
        "artifactGC": "deleting artifacts when the Workflow object is deleted on the cluster",
        "metrics": "Prometheus metrics emitted by the Argo controller",
        "podMetadata": "labels and annotations on pods",
        "workflowMetadata": "labels and annotations on the Workflow object",
        "ttlStrategy": "deleting finished Workflow objects from the cluster",
        "archiveLogs": "the local engine always archives main.log like archiveLogs: true",
        "artifactRepositoryRef": (
            "selects the cluster's artifact repository; locally EngineContext.store and "
            "key_format, built from the same config, play that role"
        ),
        "imagePullSecrets": "registry credentials for pulling images",
        "podPriorityClassName": "pod scheduling priority",
        "tolerations": _POD_SCHEDULING,
        "nodeSelector": _POD_SCHEDULING,
        "affinity": _POD_SCHEDULING,
        "podResources": _RESOURCES,
        "podDisruptionBudget": "protects pods from voluntary eviction; nothing evicts a local task",
    },
    "Template": {
        "podResources": _RESOURCES,
        "metadata": "labels and annotations on the template's pod",
        "securityContext": "pod security settings enforced by the kubelet",
        "serviceAccountName": "Kubernetes RBAC identity of the pod",
        "automountServiceAccountToken": "Kubernetes API token mounting in the pod",
        "priorityClassName": "pod scheduling priority",
        "metrics": "Prometheus metrics emitted by the Argo controller",
        "tolerations": _POD_SCHEDULING,
        "nodeSelector": _POD_SCHEDULING,
        "affinity": _POD_SCHEDULING,
    },
    "Container": {
        "imagePullPolicy": "image pulling",
        "resources": _RESOURCES,
        "securityContext": "container security settings enforced by the kubelet",
    },
    "RetryStrategy": {
        "affinity": "keeps retries off the failed node; there is one machine",
    },
    "EmptyDir": {
        "medium": "tmpfs vs disk backing of the volume",
        "sizeLimit": "volume size limit enforced by the kubelet",
    },
    "OutputArtifact": {
        "artifactGC": "deleting the artifact with its Workflow object on the cluster",
    },
    "WorkflowParameter": {"description": "documentation for the Argo UI"},
    "InputParameter": {"description": "documentation for the Argo UI"},
    "OutputParameter": {"description": "documentation for the Argo UI"},
}

REFUSED: Final[Mapping[str, Mapping[str, str]]] = {
    "WorkflowSpec": {
        "podSpecPatch": _POD_SPEC,
        "hostNetwork": "host networking changes how tasks reach each other; not modelled locally",
        "volumeClaimTemplates": "PersistentVolumeClaims are volumes Kubernetes provisions",
        "dnsPolicy": "selects the cluster's DNS service",
    },
    "Template": {
        "podSpecPatch": _POD_SPEC,
        "resource": "resource templates create or patch objects through the Kubernetes API",
        "sidecars": "sidecars are extra containers Kubernetes runs in the task's pod",
        "http": "http templates run in Argo's agent pod on the cluster",
        "plugin": "executor plugins run as sidecars of Argo's agent pod",
        "data": "data templates run in Argo's agent pod on the cluster",
        "suspend": "suspend templates wait for `argo resume` on the cluster",
        "resourceClaims": "dynamic resource claims are allocated by Kubernetes",
    },
    "Volume": {
        "persistentVolumeClaim": "a PersistentVolumeClaim is storage Kubernetes binds",
        "configMap": "ConfigMap volumes are projected by the kubelet",
        "secret": "Secret volumes are projected by the kubelet",
        "hostPath": "hostPath mounts a cluster node's folder",
        "projected": "projected volumes are assembled by the kubelet",
        "downwardAPI": "downward API volumes are assembled by the kubelet",
    },
    "Synchronization": {
        "semaphores": "semaphores count against a ConfigMap limit on the cluster",
    },
    "InputArtifact": {
        "plugin": "artifact plugins run as sidecars in the task's pod",
        **dict.fromkeys(("gcs", "azure", "http", "git", "hdfs", "oss", "artifactory"), _STORAGE),
    },
    "OutputArtifact": {
        "plugin": "artifact plugins run as sidecars in the task's pod",
        **dict.fromkeys(("gcs", "azure", "hdfs", "oss", "artifactory"), _STORAGE),
    },
}
