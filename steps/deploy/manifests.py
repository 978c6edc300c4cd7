"""The Kubernetes objects of a model rollout, as plain dicts: no API calls here.

For one model name there are two tracks, each a `Deployment` of the serving image, a
`Service` and a `PodDisruptionBudget`: *stable* (the version the registry points at) and,
while the deploy step runs, *canary*. One Gateway API `HTTPRoute` sends the model's OIP
paths to them; its two backend weights are the split. The deploy step's kubernetes backend
(steps/deploy/kube.py) applies exactly these objects, and `mlpipe deploy render` writes them,
so what a reviewer reads is what the cluster gets. The deploy task's Role is built here too,
from the calls that backend makes, so it grants nothing else.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from steps.core.errors import BadInput
from steps.core.model_registry import version_key
from steps.core.names import Artifact, Env, ModelFile
from steps.core.specs import KubeServingSpec

SERVING_UID = 10001
"""The serving image's USER (images/serving/Dockerfile); pods run as it, never as root."""
TMP_VOLUME = "tmp"
CREDENTIALS_VOLUME = "s3-credentials"
CREDENTIALS_DIR = "/var/run/secrets/mlpipe-s3"
SECRET_FILES = {
    Env.S3_ENDPOINT: "endpoint",
    Env.ACCESS_KEY: "access-key",
    Env.SECRET_KEY: "secret-key",
}
"""The credentials Secret's keys (the steps' Secret) and the variable the server reads each as."""
SERVE_FROM_FILES = (
    "export "
    + " ".join(f'{env.value}="$(cat {CREDENTIALS_DIR}/{key})"' for env, key in SECRET_FILES.items())
    + ' && exec python -m serving "$@"'
)
"""The Secret reaches the pod as read-only files, never as env in the pod spec; the server,
which reads its S3 settings from the environment, gets them at exec."""
PORT_NAME = "http"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
CONTAINER = "server"
FIELD_MANAGER = "mlpipe"
APP_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
MODEL_LABEL = "mlpipe/model"
TRACK_LABEL = "mlpipe/track"
DIGEST_ANNOTATION = "mlpipe/digest"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""Set by Kubernetes on every EndpointSlice of a Service: how the backend finds its pods."""
GATEWAY_GROUP = "gateway.networking.k8s.io"
MAX_NAME = 63
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class Track(StrEnum):
    STABLE = "stable"
    CANARY = "canary"


@dataclass(frozen=True)
class Kind:
    """One API resource the backend touches, as the dynamic client and RBAC name it."""

    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
SERVICE = Kind("v1", "Service", "services")
DISRUPTION_BUDGET = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
HTTP_ROUTE = Kind(f"{GATEWAY_GROUP}/v1", "HTTPRoute", "httproutes")
ENDPOINT_SLICE = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
TRACK_KINDS = (SERVICE, DISRUPTION_BUDGET, DEPLOYMENT)
"""What one track is made of, in apply order (the Deployment last: its pods find their
Service and budget in place); deleted in reverse."""


@dataclass(frozen=True)
class ServedModel:
    """The model version a track serves: its registry files, fetched by the pods."""

    name: str
    digest: str
    model_uri: str
    schema_uri: str

    @classmethod
    def in_registry(cls, bucket: str, name: str, digest: str) -> "ServedModel":
        folder = f"s3://{bucket}/{version_key(name, digest)}"
        return cls(
            name=name,
            digest=digest,
            model_uri=f"{folder}/{Artifact.ONNX.filename}",
            schema_uri=f"{folder}/{ModelFile.FEATURE_SCHEMA.value}",
        )


def object_name(model_name: str, track: Track | None = None) -> str:
    """`<model>` (the route) or `<model>-<track>`: a DNS label, as Service names must be."""
    name = model_name if track is None else f"{model_name}-{track}"
    if len(name) > MAX_NAME or not DNS_LABEL.fullmatch(name):
        raise BadInput(
            f"model name {model_name!r} cannot name Kubernetes objects: {name!r} must be at "
            f"most {MAX_NAME} lowercase letters, digits or '-', starting with a letter"
        )
    return name


def split(canary_percent: int) -> tuple[int, int]:
    """(stable, canary) backend weights for a canary share in percent; they sum to 100."""
    if not 0 <= canary_percent <= 100:
        raise BadInput(f"canary traffic must be 0-100 percent, got {canary_percent}")
    return 100 - canary_percent, canary_percent


def service_url(spec: KubeServingSpec, model_name: str, track: Track) -> str:
    """The in-cluster base URL of a track's Service."""
    name = object_name(model_name, track)
    return f"http://{name}.{spec.namespace}.svc.cluster.local:{spec.port}"


def track_labels(model_name: str, track: Track) -> dict[str, str]:
    """The selector of one track's pods."""
    return {MODEL_LABEL: model_name, TRACK_LABEL: track.value}


def track_manifests(
    spec: KubeServingSpec, model: ServedModel, track: Track
) -> list[dict[str, Any]]:
    """One track's objects, in TRACK_KINDS order."""
    return [
        service(spec, model.name, track),
        disruption_budget(spec, model.name, track),
        deployment(spec, model, track),
    ]


def deployment(spec: KubeServingSpec, model: ServedModel, track: Track) -> dict[str, Any]:
    """The serving pods of one track; a rolling update never drops below the wanted count."""
    labels = track_labels(model.name, track)
    replicas = spec.replicas if track is Track.STABLE else spec.canary_replicas
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": metadata(spec.namespace, object_name(model.name, track), _serving(labels)),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": _serving(labels),
                    "annotations": {DIGEST_ANNOTATION: model.digest},
                },
                "spec": pod_spec(spec, model),
            },
        },
    }


def pod_spec(spec: KubeServingSpec, model: ServedModel) -> dict[str, Any]:
    """`python -m serving` hardened: non-root, read-only root with an emptyDir /tmp, no
    capabilities, no API token, and it refuses a model that does not hash to the digest."""
    return {
        "serviceAccountName": spec.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # uvicorn drains in-flight requests for drain_seconds after SIGTERM.
        "terminationGracePeriodSeconds": spec.drain_seconds + 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVING_UID,
            "runAsGroup": SERVING_UID,
            "fsGroup": SERVING_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                # By digest in the config, so Always costs a manifest check, not a pull.
                "imagePullPolicy": "Always",
                "command": ["sh", "-c", SERVE_FROM_FILES, "serving"],
                "args": [
                    *("--host", "0.0.0.0", "--port", str(spec.port)),
                    *("--model", model.model_uri, "--schema", model.schema_uri),
                    *("--name", model.name, "--digest", model.digest),
                    *("--drain-timeout", str(spec.drain_seconds)),
                ],
                "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
                "env": _storage_env(spec),
                "resources": {
                    "requests": {"cpu": spec.cpu, "memory": spec.memory},
                    "limits": {"cpu": spec.cpu, "memory": spec.memory},
                },
                # The port opens only after the model is fetched, verified and probed, so
                # startup may take a while; liveness starts counting after it.
                "startupProbe": _probe(LIVE_PATH, period=5, failures=60),
                "livenessProbe": _probe(LIVE_PATH, period=10, failures=3),
                "readinessProbe": _probe(READY_PATH, period=5, failures=2),
                "securityContext": {
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [
                    {"name": TMP_VOLUME, "mountPath": "/tmp"},
                    {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}},
            {
                "name": CREDENTIALS_VOLUME,
                "secret": {
                    "secretName": spec.credentials_secret,
                    "items": [{"key": key, "path": key} for key in SECRET_FILES.values()],
                    "defaultMode": 0o440,  # the pod's group (fsGroup) reads, nobody writes
                },
            },
        ],
    }


def network_policy(spec: KubeServingSpec, model_name: str) -> dict[str, Any]:
    """Both tracks' pods accept traffic on the serving port only (the gateway's and the
    canary analysis' scrapes); everything else inbound is dropped."""
    selector = {**_serving({}), MODEL_LABEL: model_name}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(spec.namespace, object_name(model_name), selector),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": spec.port, "protocol": "TCP"}]}],
        },
    }


def service(spec: KubeServingSpec, model_name: str, track: Track) -> dict[str, Any]:
    labels = track_labels(model_name, track)
    return {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": metadata(spec.namespace, object_name(model_name, track), _serving(labels)),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": spec.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def disruption_budget(spec: KubeServingSpec, model_name: str, track: Track) -> dict[str, Any]:
    """A node drain takes at most one pod of a track at a time, and never waits on a pod
    that is not ready anyway."""
    labels = track_labels(model_name, track)
    return {
        "apiVersion": DISRUPTION_BUDGET.api_version,
        "kind": DISRUPTION_BUDGET.kind,
        "metadata": metadata(spec.namespace, object_name(model_name, track), _serving(labels)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def http_route(
    spec: KubeServingSpec, model_name: str, canary_percent: int | None
) -> dict[str, Any]:
    """The model's OIP paths on the Gateway. `canary_percent` None: no canary exists, all
    traffic to stable; else both backends, weighted by `split`."""
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": spec.gateway.name}
    if spec.gateway.namespace is not None:
        parent["namespace"] = spec.gateway.namespace
    if spec.gateway.section_name is not None:
        parent["sectionName"] = spec.gateway.section_name
    if canary_percent is None:
        weights = {Track.STABLE: 100}
    else:
        stable, canary = split(canary_percent)
        weights = {Track.STABLE: stable, Track.CANARY: canary}
    route_spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": f"/v2/models/{model_name}"}}],
                "backendRefs": [
                    {
                        "group": "",
                        "kind": SERVICE.kind,
                        "name": object_name(model_name, track),
                        "port": spec.port,
                        "weight": weight,
                    }
                    for track, weight in weights.items()
                ],
            }
        ],
    }
    if spec.hostnames:
        route_spec["hostnames"] = list(spec.hostnames)
    return {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": metadata(
            spec.namespace, object_name(model_name), _serving({MODEL_LABEL: model_name})
        ),
        "spec": route_spec,
    }


@dataclass(frozen=True)
class RestorePlan:
    """What puts a model's serving back on one registry version (steps/deploy/promotion.py):
    objects to apply, in order, then objects to delete (kind, name)."""

    apply: list[dict[str, Any]]
    delete: list[tuple[Kind, str]]


def restore_plan(spec: KubeServingSpec, model_name: str, digest: str | None) -> RestorePlan:
    """Stable on `digest` with all traffic and no canary; `digest` None: nothing of the
    model served (a first deploy that never committed). Applying an unchanged stable track
    starts no rollout, so restoring the version already serving costs no pod."""
    canary = [(kind, object_name(model_name, Track.CANARY)) for kind in reversed(TRACK_KINDS)]
    if digest is None:
        stable = [(kind, object_name(model_name, Track.STABLE)) for kind in reversed(TRACK_KINDS)]
        return RestorePlan([], [(HTTP_ROUTE, object_name(model_name)), *canary, *stable])
    served = ServedModel.in_registry(spec.bucket, model_name, digest)
    return RestorePlan(
        [*track_manifests(spec, served, Track.STABLE), http_route(spec, model_name, None)], canary
    )


def served_digest(deployment: Mapping[str, Any]) -> str | None:
    """The model digest a track's Deployment runs, from its pod template."""
    template = deployment.get("spec", {}).get("template", {})
    digest = (template.get("metadata", {}).get("annotations") or {}).get(DIGEST_ANNOTATION)
    return str(digest) if digest else None


def deploy_rules(spec: KubeServingSpec) -> list[dict[str, Any]]:
    """What the kubernetes backend calls, and nothing more. Server-side apply is a PATCH that
    creates a missing object, which the API server authorizes as `create`."""
    rules = [
        # apply both tracks; poll the rollout; delete the canary after promote or rollback
        rule(DEPLOYMENT.group, [DEPLOYMENT.plural], ["get", "create", "patch", "delete"]),
        rule(SERVICE.group, [SERVICE.plural], ["create", "patch", "delete"]),
        rule(DISRUPTION_BUDGET.group, [DISRUPTION_BUDGET.plural], ["create", "patch", "delete"]),
        # apply the split; read whether the Gateway accepted the route; delete it when a
        # first deploy is rolled back
        rule(HTTP_ROUTE.group, [HTTP_ROUTE.plural], ["get", "create", "patch", "delete"]),
    ]
    if spec.prometheus_url is None:
        rules += [
            # each track's pods, from its Service's EndpointSlices; then their /metrics
            rule(ENDPOINT_SLICE.group, [ENDPOINT_SLICE.plural], ["list"]),
            rule("", ["pods/proxy"], ["get"]),
        ]
    return rules


def deploy_rbac(spec: KubeServingSpec, deploy_account: str) -> list[dict[str, Any]]:
    """The deploy task's Role and its binding to the deploy ServiceAccount (both named
    after it), in the serving namespace."""
    return [
        role(spec.namespace, deploy_account, deploy_rules(spec)),
        role_binding(spec.namespace, deploy_account, [deploy_account]),
    ]


# --- generic builders, shared with workflows/install.py -----------------------------------------


def metadata(namespace: str, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {APP_LABEL: "mlpipe", **(labels or {})},
    }


def service_account(namespace: str, name: str, *, mount_token: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(namespace, name),
        "automountServiceAccountToken": mount_token,
    }


def rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def role(namespace: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(namespace, name),
        "rules": rules,
    }


def role_binding(namespace: str, role_name: str, accounts: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(namespace, role_name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
        "subjects": [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
            for account in accounts
        ],
    }


def _serving(labels: Mapping[str, str]) -> dict[str, str]:
    return {APP_LABEL: "mlpipe", COMPONENT_LABEL: "serving", **labels}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _storage_env(spec: KubeServingSpec) -> list[dict[str, Any]]:
    """The region; endpoint and credentials come from the Secret's files (SERVE_FROM_FILES)."""
    return [{"name": Env.S3_REGION.value, "value": spec.region}]
