"""The Kubernetes rollout built in memory (steps/deploy/manifests.py, steps/deploy/kube.py):
weights and splits, names, RBAC rules, and the backend's reading of API objects and
Prometheus answers. No cluster here: objects shaped as the API returns them."""

import json
import re
from typing import Any

import pytest

from steps.core.errors import BadInput, ClusterError
from steps.core.registry import DEPLOY_SPEC
from steps.core.specs import DeploySpec
from steps.deploy.canary import parse_track
from steps.deploy.kube import (
    prometheus_query,
    prometheus_texts,
    rollout_complete,
    route_accepted,
    slice_pods,
)
from steps.deploy.manifests import (
    DEPLOYMENT,
    HTTP_ROUTE,
    SERVING_UID,
    TRACK_KINDS,
    Track,
    deploy_rules,
    http_route,
    object_name,
    restore_plan,
    served_digest,
    split,
)
from tests.support.kube import grants, kube_spec
from tests.support.paths import CLUSTER, LOCAL, ROOT
from workflows.config import ConfigError, load_config
from workflows.install import rollout_manifests
from workflows.parameters import workflow_arguments
from workflows.pipeline import STEPS

NEW = "a" * 64


OLD = "b" * 64


def test_pods_run_as_the_serving_images_user() -> None:
    dockerfile = (ROOT / "images" / "serving" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert users == [(str(SERVING_UID), str(SERVING_UID))]


@pytest.mark.parametrize("percent", [0, 1, 10, 33, 50, 99, 100])
def test_weights_sum_to_100_and_follow_the_requested_split(percent: int) -> None:
    route = http_route(kube_spec(), "churn", percent)
    [rule] = route["spec"]["rules"]
    weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
    assert weights == {"churn-stable": 100 - percent, "churn-canary": percent}
    assert sum(weights.values()) == 100


def test_without_a_canary_the_route_has_stable_alone() -> None:
    [rule] = http_route(kube_spec(), "churn", None)["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [("churn-stable", 100)]


@pytest.mark.parametrize("percent", [-1, 101])
def test_a_split_outside_0_to_100_is_refused(percent: int) -> None:
    with pytest.raises(BadInput, match="0-100 percent"):
        split(percent)


def test_the_gateway_listener_and_hostnames_come_from_the_config() -> None:
    configured = kube_spec(
        "serving.gateway.namespace=gateways",
        "serving.gateway.section_name=https",
        "serving.hostnames=[models.example.com]",
    )
    route = http_route(configured, "churn", 10)
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "mlpipe-gateway",
            "namespace": "gateways",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["models.example.com"]


def test_with_prometheus_the_deploy_role_cannot_reach_pods() -> None:
    granted = grants(deploy_rules(kube_spec("serving.prometheus_url=http://prometheus.mon:9090")))
    assert not {resource for _, resource, _ in granted} & {"pods/proxy", "endpointslices"}


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["serving.cpu=lots"], "serving.cpu"),
        (["serving.replicas=0"], "serving.replicas"),
        (["serving.service_account=default"], "serving.service_account"),
        (["serving.gateway.nmae=gw"], "serving.gateway.nmae"),
        (["serving.prometheus_url=prometheus:9090"], "serving.prometheus_url"),
    ],
)
def test_a_bad_serving_setting_is_named(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{re.escape(key)}'"):
        load_config(CLUSTER, overrides)


@pytest.mark.parametrize(
    ("digest", "stable", "percent", "message"),
    [
        ("abc", None, 10, "--digest 'abc': expected the ONNX file's sha256"),
        (NEW, NEW.upper(), 10, "--stable-digest"),
        (NEW, OLD, 150, "--canary-percent 150: expected 0-100"),
    ],
)
def test_bad_render_arguments_are_named(
    digest: str, stable: str | None, percent: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        rollout_manifests(load_config(CLUSTER), digest, stable, percent)


@pytest.mark.parametrize("name", ["Churn", "1churn", "churn_v2", "c" * 60])
def test_a_model_name_that_cannot_name_kubernetes_objects_is_refused(name: str) -> None:
    with pytest.raises(BadInput, match="cannot name Kubernetes objects"):
        object_name(name, Track.CANARY)


def test_the_deploy_step_receives_the_kubernetes_settings_in_its_spec() -> None:
    cluster = DeploySpec.from_json_arg(
        workflow_arguments(load_config(CLUSTER), STEPS)[DEPLOY_SPEC.name]
    )
    assert cluster.kubernetes is not None
    assert (cluster.kubernetes.namespace, cluster.kubernetes.image) == (
        "mlpipe",
        "ghcr.io/mlpipe/serving:0.1.0@sha256:" + "0" * 64,
    )
    assert cluster.kubernetes.credentials_secret == "mlpipe-s3"
    local = DeploySpec.from_json_arg(
        workflow_arguments(load_config(LOCAL), STEPS)[DEPLOY_SPEC.name]
    )
    assert local.kubernetes is None, "no serving section: the local backend"
    with pytest.raises(ConfigError, match="set the `serving:` section instead"):
        load_config(CLUSTER, [f"deploy.kubernetes={json.dumps(kube_spec().model_dump())}"])


def deployment_status(generation: int, observed: int, **counts: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": observed, **counts},
    }


def test_a_rollout_is_complete_only_when_every_wanted_pod_is_current_and_available() -> None:
    ready = {"replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    assert rollout_complete(deployment_status(3, 3, **ready))
    assert not rollout_complete(deployment_status(3, 2, **ready)), "old generation observed"
    assert not rollout_complete(deployment_status(3, 3, **{**ready, "availableReplicas": 1}))
    surging = {"replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}
    assert not rollout_complete(deployment_status(3, 3, **surging)), "an old pod still serves"
    assert not rollout_complete({"metadata": {"generation": 1}, "spec": {"replicas": 1}})


def route_status(generation: int, *conditions: tuple[str, str, int]) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"parentRefs": [{"name": "mlpipe-gateway"}]},
        "status": {
            "parents": [
                {
                    "parentRef": {"name": "mlpipe-gateway"},
                    "conditions": [
                        {"type": kind, "status": status, "observedGeneration": observed}
                        for kind, status, observed in conditions
                    ],
                }
            ]
        },
    }


def test_a_route_counts_only_once_its_gateway_accepted_this_generation() -> None:
    assert route_accepted(route_status(4, ("Accepted", "True", 4), ("ResolvedRefs", "True", 4)))
    assert not route_accepted(
        route_status(4, ("Accepted", "True", 3), ("ResolvedRefs", "True", 3))
    ), "the controller has not seen the new weights yet"
    assert not route_accepted(
        route_status(4, ("Accepted", "True", 4), ("ResolvedRefs", "False", 4))
    ), "a backend Service is missing"
    assert not route_accepted(route_status(4, ("Accepted", "True", 4)))
    assert not route_accepted({"metadata": {"generation": 1}, "spec": {"parentRefs": [{}]}})


def test_scraped_pods_are_every_pod_behind_the_service_ready_or_not() -> None:
    slices = [
        {
            "endpoints": [
                {"targetRef": {"kind": "Pod", "name": "churn-canary-7d9f-b"}},
                {"targetRef": {"kind": "Pod", "name": "churn-canary-7d9f-a"}},
            ]
        },
        {
            "endpoints": [
                {
                    "conditions": {"ready": False, "terminating": True},
                    "targetRef": {"kind": "Pod", "name": "churn-canary-5c4e-z"},
                },
                {"targetRef": {"kind": "Pod", "name": "churn-canary-7d9f-a"}},
                {"addresses": ["10.0.0.9"]},
            ]
        },
        {"endpoints": None},
    ]
    assert slice_pods(slices) == [
        "churn-canary-5c4e-z",
        "churn-canary-7d9f-a",
        "churn-canary-7d9f-b",
    ]


def test_prometheus_series_read_like_a_scrape_of_each_pod() -> None:
    query = prometheus_query("mlpipe", "churn-canary")
    assert 'namespace="mlpipe"' in query and 'pod=~"churn-canary-[a-z0-9]+-[a-z0-9]+"' in query
    assert re.fullmatch(query.split('pod=~"')[1][:-2], "churn-canary-7d9f8c-x2k4p")

    def sample(name: str, pod: str, value: str, **labels: str) -> dict[str, Any]:
        metric = {"__name__": name, "namespace": "mlpipe", "pod": pod, "model": "churn"}
        return {"metric": {**metric, **labels}, "value": [1764380000.0, value]}

    requests, scores = "mlpipe_inference_requests_total", "mlpipe_inference_score_bucket"
    payload = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                sample(requests, "churn-canary-1-a", "40", status="200"),
                sample(requests, "churn-canary-1-a", "2", status="500"),
                sample(requests, "churn-canary-1-b", "10", status="200"),
                sample(scores, "churn-canary-1-b", "7", le="0.5"),
                sample(scores, "churn-canary-1-b", "10", le="+Inf"),
                sample(requests, "churn-canary-1-b", "3", model='odd"name', status="200"),
            ],
        },
    }
    texts = prometheus_texts(payload)
    assert len(texts) == 2, "one text per pod"
    track = parse_track(texts, "churn")
    assert (track.requests, track.errors) == (52, 2)
    assert track.scores == {0.5: 7, float("inf"): 10}
    with pytest.raises(ClusterError, match="not an instant vector"):
        prometheus_texts({"status": "error", "error": "bad query"})


# --- repairing a promotion (steps/deploy/promotion.py) without a cluster ---------------------


def test_a_restore_puts_stable_on_the_registry_version_with_all_traffic_and_no_canary() -> None:
    plan = restore_plan(kube_spec(), "churn", OLD)
    kinds = [(manifest["kind"], manifest["metadata"]["name"]) for manifest in plan.apply]
    assert kinds == [
        ("Service", "churn-stable"),
        ("PodDisruptionBudget", "churn-stable"),
        ("Deployment", "churn-stable"),
        ("HTTPRoute", "churn"),
    ]
    deployment = plan.apply[2]
    assert served_digest(deployment) == OLD
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--digest") + 1] == OLD
    assert args[args.index("--model") + 1] == (
        f"s3://{kube_spec().bucket}/registry/churn/versions/{OLD}/model.onnx"
    )
    [rule] = plan.apply[3]["spec"]["rules"]
    assert [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] == [("churn-stable", 100)]
    assert plan.delete == [(kind, "churn-canary") for kind in reversed(TRACK_KINDS)]


def test_restoring_no_model_removes_the_route_and_both_tracks() -> None:
    plan = restore_plan(kube_spec(), "churn", None)
    assert plan.apply == []
    assert plan.delete[0] == (HTTP_ROUTE, "churn")
    assert (DEPLOYMENT, "churn-stable") in plan.delete and (
        DEPLOYMENT,
        "churn-canary",
    ) in plan.delete


def test_the_served_digest_is_read_from_the_pod_template() -> None:
    assert served_digest(restore_plan(kube_spec(), "churn", NEW).apply[2]) == NEW
    assert served_digest({"spec": {"template": {"metadata": {}}}}) is None
