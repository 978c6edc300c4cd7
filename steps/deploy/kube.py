"""The kubernetes canary backend: the one module that calls the Kubernetes API.

Every call is thin; which objects, which weights and what counts as ready are decided by the
pure functions in steps/deploy/manifests.py and the `*_complete`/`*_accepted`/`*_texts`
functions below, which are tested without a cluster. Objects are written by server-side
apply with the field manager `mlpipe` and `force` (the deploy task owns these objects: a
hand edit of a managed field is overwritten, not a reason to stop a rollback), so the RBAC
it needs is `create` + `patch` (see kube_manifests.deploy_rules).

The split lives in the HTTPRoute, so real users are the canary's traffic: `hold()` only
waits. Metrics come from each pod of a track (its Service's EndpointSlices, then `/metrics`
through the API server's pod proxy) or, with `prometheus_url`, from Prometheus: series
labelled `namespace` and `pod`, as Kubernetes service discovery names them. Prometheus
lags by its scrape interval, so hold times should be several intervals long.
"""

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import httpx

from steps.core.errors import BadInput, ClusterError
from steps.core.specs import KubeServingSpec
from steps.deploy.backend import CanaryBackend, ModelVersion, Outcomes, Scrape
from steps.deploy.manifests import (
    DEPLOYMENT,
    ENDPOINT_SLICE,
    FIELD_MANAGER,
    HTTP_ROUTE,
    METRICS_PATH,
    SERVICE_NAME_LABEL,
    TRACK_KINDS,
    Kind,
    ServedModel,
    Track,
    http_route,
    object_name,
    restore_plan,
    served_digest,
    service_url,
    track_manifests,
)

POLL_SECONDS = 2.0
ROUTE_TIMEOUT_SECONDS = 120.0
"""How long the Gateway's controller may take to accept a route change."""
PROMETHEUS_TIMEOUT_SECONDS = 30.0
SCRAPED_SERIES = (
    "mlpipe_inference_requests_total",
    "mlpipe_inference_request_duration_seconds_bucket",
    "mlpipe_inference_score_bucket",
)
"""The series the canary analysis (steps/deploy/canary.py) reads."""


class KubeBackend:
    """Stable and canary tracks of one model in one namespace (steps/deploy/backend.py)."""

    kind = "kubernetes"

    def __init__(self, spec: KubeServingSpec, model_name: str, api_client: Any) -> None:
        from kubernetes.client import CoreV1Api
        from kubernetes.dynamic import DynamicClient

        object_name(model_name, Track.CANARY)  # a bad name fails before anything is applied
        self.spec = spec
        self.model_name = model_name
        # The client is untyped where it matters; what it returns is checked by to_dict().
        self._client: Any = DynamicClient(api_client)  # type: ignore[no-untyped-call]
        self._core: Any = CoreV1Api(api_client)

    # --- the CanaryBackend protocol ----------------------------------------------------------

    def start_canary(self, version: ModelVersion) -> None:
        self._apply_track(_served(version, self.model_name), Track.CANARY)

    def route(self, canary_percent: int) -> None:
        self._apply_route(canary_percent)

    def hold(self, seconds: float) -> None:
        time.sleep(seconds)

    def scrape(self) -> Scrape:
        return Scrape(stable=self._texts(Track.STABLE), canary=self._texts(Track.CANARY))

    def outcomes(self) -> Outcomes | None:
        """No label feed on the cluster yet: the canary judges scores, errors and latency."""
        return None

    def promote(self, version: ModelVersion) -> str:
        """Roll stable to `version` (no fewer ready pods than wanted at any time), send it
        all traffic, then remove the canary."""
        self._apply_track(_served(version, self.model_name), Track.STABLE)
        self._apply_route(None)
        self._remove_canary()
        return service_url(self.spec, self.model_name, Track.STABLE)

    def restore(self, digest: str | None) -> None:
        """Apply `restore_plan`: stable on `digest` (waiting for its rollout, none if it
        serves it already), the route all to stable, then the canary deleted, even if the
        route change failed: a canary being rolled back must not keep serving."""
        plan = restore_plan(self.spec, self.model_name, digest)
        try:
            for manifest in plan.apply:
                self._apply(manifest)
            if plan.apply:
                self._wait_for_track(Track.STABLE, digest or "")
                self._wait_for_route(object_name(self.model_name))
        finally:
            for kind, name in plan.delete:
                self._delete(kind, name)

    def served(self) -> str | None:
        deployment = self._find(DEPLOYMENT, object_name(self.model_name, Track.STABLE))
        return served_digest(deployment) if deployment is not None else None

    # --- thin calls ---------------------------------------------------------------------------

    def _apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        with _calls(f"applying {manifest['kind']} {self.spec.namespace}/{name}"):
            applied = self._client.server_side_apply(
                self._resource(manifest["apiVersion"], manifest["kind"]),
                body=dict(manifest),
                name=name,
                namespace=self.spec.namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
            result: dict[str, Any] = applied.to_dict()
            return result

    def _get(self, kind: Kind, name: str) -> dict[str, Any]:
        found = self._find(kind, name)
        if found is None:
            raise ClusterError(f"{kind.kind} {self.spec.namespace}/{name} does not exist")
        return found

    def _find(self, kind: Kind, name: str) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        with _calls(f"reading {kind.kind} {self.spec.namespace}/{name}"):
            try:
                found = self._client.get(
                    self._resource(kind.api_version, kind.kind),
                    name=name,
                    namespace=self.spec.namespace,
                )
            except NotFoundError:
                return None
            result: dict[str, Any] = found.to_dict()
            return result

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise ClusterError(
                f"the cluster does not serve {kind} ({api_version}); for HTTPRoute install "
                "the Gateway API CRDs and a Gateway controller"
            ) from None

    def _apply_track(self, model: ServedModel, track: Track) -> None:
        for manifest in track_manifests(self.spec, model, track):
            self._apply(manifest)
        self._wait_for_track(track, model.digest)

    def _wait_for_track(self, track: Track, digest: str) -> None:
        name = object_name(self.model_name, track)
        _wait(
            lambda: rollout_complete(self._get(DEPLOYMENT, name)),
            self.spec.ready_timeout_seconds,
            f"Deployment {self.spec.namespace}/{name} (model {digest[:12]}) not ready",
        )

    def _apply_route(self, canary_percent: int | None) -> None:
        applied = self._apply(http_route(self.spec, self.model_name, canary_percent))
        self._wait_for_route(applied["metadata"]["name"])

    def _wait_for_route(self, name: str) -> None:
        _wait(
            lambda: route_accepted(self._get(HTTP_ROUTE, name)),
            ROUTE_TIMEOUT_SECONDS,
            f"HTTPRoute {self.spec.namespace}/{name} not accepted by Gateway "
            f"{self.spec.gateway.name} (is a Gateway controller running?)",
        )

    def _remove_canary(self) -> None:
        name = object_name(self.model_name, Track.CANARY)
        for kind in reversed(TRACK_KINDS):
            self._delete(kind, name)

    def _delete(self, kind: Kind, name: str) -> None:
        """Delete one object; one that never came up or is already gone is fine."""
        from kubernetes.dynamic.exceptions import NotFoundError

        with _calls(f"deleting {kind.kind} {self.spec.namespace}/{name}"), suppress(NotFoundError):
            self._client.delete(
                self._resource(kind.api_version, kind.kind),
                name=name,
                namespace=self.spec.namespace,
            )

    def _texts(self, track: Track) -> list[str]:
        if self.spec.prometheus_url is not None:
            return self._prometheus_texts(track)
        service = object_name(self.model_name, track)
        with _calls(f"listing the pods behind Service {self.spec.namespace}/{service}"):
            slices = self._client.get(
                self._resource(ENDPOINT_SLICE.api_version, ENDPOINT_SLICE.kind),
                namespace=self.spec.namespace,
                label_selector=f"{SERVICE_NAME_LABEL}={service}",
            ).to_dict()
        texts = []
        for pod in slice_pods(slices.get("items", [])):
            with _calls(f"reading {METRICS_PATH} of pod {self.spec.namespace}/{pod}"):
                text = self._core.connect_get_namespaced_pod_proxy_with_path(
                    f"{pod}:{self.spec.port}", self.spec.namespace, METRICS_PATH.lstrip("/")
                )
            texts.append(str(text))
        return texts

    def _prometheus_texts(self, track: Track) -> list[str]:
        url = f"{str(self.spec.prometheus_url).rstrip('/')}/api/v1/query"
        query = prometheus_query(self.spec.namespace, object_name(self.model_name, track))
        try:
            response = httpx.get(url, params={"query": query}, timeout=PROMETHEUS_TIMEOUT_SECONDS)
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ClusterError(f"querying Prometheus at {url}: {error}") from None
        return prometheus_texts(payload)


def connect(spec: KubeServingSpec, model_name: str) -> CanaryBackend:
    """The backend, talking to the API as the pod's ServiceAccount in a pod (the deploy
    task's), else as the current kubeconfig context."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as error:
            raise ClusterError(f"no Kubernetes API to deploy to: {error}") from None
    with _calls("connecting to the Kubernetes API"):
        return KubeBackend(spec, model_name, client.ApiClient())


# --- pure decisions, tested without a cluster ------------------------------------------------


def rollout_complete(deployment: Mapping[str, Any]) -> bool:
    """Every wanted pod runs the current template and is available (what `kubectl rollout
    status` waits for)."""
    wanted = deployment.get("spec", {}).get("replicas", 1)
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation", 0)
    return bool(
        status.get("observedGeneration", 0) >= generation
        and status.get("updatedReplicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
    )


def route_accepted(route: Mapping[str, Any]) -> bool:
    """Every parent Gateway accepted the route's current generation and resolved its
    backends (a missing canary Service would leave its weight's share failing)."""
    generation = route.get("metadata", {}).get("generation", 0)
    parents = (route.get("status") or {}).get("parents") or []
    wanted = len(route.get("spec", {}).get("parentRefs", []))
    if len(parents) < wanted:
        return False
    for parent in parents:
        conditions = {c["type"]: c for c in parent.get("conditions", [])}
        for kind in ("Accepted", "ResolvedRefs"):
            condition = conditions.get(kind)
            if condition is None or condition.get("status") != "True":
                return False
            if condition.get("observedGeneration", generation) < generation:
                return False
    return True


def slice_pods(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the pods behind a Service's EndpointSlices, ready or not: a pod that took
    traffic since the last scrape must be counted even if it is now terminating."""
    pods = {
        endpoint["targetRef"]["name"]
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if (endpoint.get("targetRef") or {}).get("kind") == "Pod"
    }
    return sorted(pods)


def prometheus_query(namespace: str, deployment: str) -> str:
    """The analysed series of one Deployment's pods (`<deployment>-<hash>-<suffix>`)."""
    names = "|".join(SCRAPED_SERIES)
    return (
        f'{{__name__=~"{names}",namespace="{namespace}",pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+"}}'
    )


def prometheus_texts(payload: Mapping[str, Any]) -> list[str]:
    """A Prometheus instant-query answer as one text exposition per pod, the form a scrape
    of each pod's /metrics has, so the analysis reads both the same way."""
    if payload.get("status") != "success" or payload.get("data", {}).get("resultType") != "vector":
        raise ClusterError(f"Prometheus answered {str(payload)[:200]!r}, not an instant vector")
    lines: defaultdict[str, list[str]] = defaultdict(list)
    for series in payload["data"]["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        pod = labels.get("pod", "")
        rendered = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(labels.items()))
        lines[pod].append(f"{name}{{{rendered}}} {series['value'][1]}")
    return ["\n".join(pod_lines) + "\n" for _, pod_lines in sorted(lines.items())]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _served(version: ModelVersion, model_name: str) -> ServedModel:
    if version.name != model_name:
        raise BadInput(f"this backend deploys model {model_name!r}, not {version.name!r}")
    return ServedModel(
        name=version.name,
        digest=version.digest,
        model_uri=version.onnx_uri,
        schema_uri=version.schema_uri,
    )


def _wait(done: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise ClusterError(f"{failure} after {timeout:g} s")
        time.sleep(POLL_SECONDS)


@contextmanager
def _calls(doing: str) -> Iterator[None]:
    """Turns an API failure into a ClusterError that says what was being done."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as error:
        reason = error.summary() if hasattr(error, "summary") else error.reason
        raise ClusterError(f"{doing}: HTTP {error.status}: {reason}") from None
    except (HTTPError, OSError) as error:
        raise ClusterError(f"{doing}: {error}") from None
