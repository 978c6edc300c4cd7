"""The serving manifests of a Kubernetes rollout (steps/deploy/manifests.py, `mlpipe deploy
render`): valid for the API server, hardened, the split in the HTTPRoute, least privilege.

No cluster here: core kinds go through `kubernetes-validate --strict`; the HTTPRoute is a
CRD that tool has no schema for, so its structure is asserted field by field instead.
"""

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.__main__ import parse_args
from steps.core.errors import BadInput, ClusterError
from steps.core.specs import DeploySpec, KubeServingSpec
from steps.deploy.canary import parse_track
from steps.deploy.kube import (
    connect,
    prometheus_query,
    prometheus_texts,
    rollout_complete,
    route_accepted,
    slice_pods,
)
from steps.deploy.manifests import (
    CREDENTIALS_DIR,
    DEPLOYMENT,
    HTTP_ROUTE,
    SERVE_FROM_FILES,
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
from tests.test_hardening import LABEL_VALUE, credential_findings, kubernetes_validate
from tests.test_install import mlpipe
from workflows.config import ConfigError, load_config
from workflows.install import load_documents, rollout_manifests
from workflows.parameters import WorkflowParam
from workflows.pipeline import workflow_arguments

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "config" / "cluster.yaml"
NEW = "a" * 64
OLD = "b" * 64


def spec(*overrides: str) -> KubeServingSpec:
    kubernetes = load_config(CLUSTER, list(overrides)).deploy_spec().kubernetes
    assert kubernetes is not None
    return kubernetes


def render(out: Path, *args: str) -> dict[str, list[dict[str, Any]]]:
    result = mlpipe("deploy", "render", "--config", str(CLUSTER), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.yaml"))
    assert result.stdout.split() == [str(path) for path in files]
    return {path.name: load_documents(path) for path in files}


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    render(out, "--digest", NEW, "--stable-digest", OLD, "--canary-percent", "25")
    return out


@pytest.fixture(scope="module")
def rendered(canary_dir: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(canary_dir.glob("*.yaml")) for doc in load_documents(path)]


def named(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered if d["kind"] == kind}


def test_render_writes_both_tracks_and_the_route_in_apply_order(canary_dir: Path) -> None:
    files = {path.name: load_documents(path) for path in sorted(canary_dir.glob("*.yaml"))}
    kinds = {name: [d["kind"] for d in docs] for name, docs in files.items()}
    assert kinds == {
        "00-service-accounts.yaml": ["ServiceAccount", "ServiceAccount"],
        "10-deploy-rbac.yaml": ["Role", "RoleBinding"],
        "15-network-policy.yaml": ["NetworkPolicy"],
        "20-stable.yaml": ["Service", "PodDisruptionBudget", "Deployment"],
        "30-canary.yaml": ["Service", "PodDisruptionBudget", "Deployment"],
        "40-http-route.yaml": ["HTTPRoute"],
    }
    for docs in files.values():
        assert all(d["metadata"]["namespace"] == "mlpipe" for d in docs)


def test_core_manifests_pass_kubernetes_validate_strict(canary_dir: Path, tmp_path: Path) -> None:
    paths = sorted(canary_dir.glob("*.yaml"))
    result = kubernetes_validate(*paths)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if line.startswith("INFO")]
    core = sum(1 for path in paths for d in load_documents(path) if d["kind"] != "HTTPRoute")
    assert len(passed) == core and all("passed" in line for line in passed), result.stdout
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert len(warnings) == 1 and "kind HTTPRoute" in warnings[0], "only the CRD is unknown"
    # --strict catches a misspelt field in what we generate.
    deployment = load_documents(canary_dir / "30-canary.yaml")[2]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    rejected = kubernetes_validate(bad)
    assert rejected.returncode != 0 and "readinessprobe" in rejected.stdout


def test_every_serving_pod_is_hardened(rendered: list[dict[str, Any]]) -> None:
    deployments = named(rendered, "Deployment")
    assert set(deployments) == {"churn-stable", "churn-canary"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "mlpipe-serving", name
        assert pod["automountServiceAccountToken"] is False, "the servers call no API"
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": SERVING_UID,
            "runAsGroup": SERVING_UID,
            "fsGroup": SERVING_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        [container] = pod["containers"]
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert set(mounts) == {"/tmp", "/var/run/secrets/mlpipe-s3"}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        assert mounts["/var/run/secrets/mlpipe-s3"]["readOnly"] is True
        resources = container["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": "1", "memory": "1Gi"}
        probes = {
            kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
            for kind in ("readinessProbe", "livenessProbe", "startupProbe")
        }
        assert probes == {
            "readinessProbe": ("/v2/health/ready", "http"),
            "livenessProbe": ("/v2/health/live", "http"),
            "startupProbe": ("/v2/health/live", "http"),
        }
        # Credentials as files from the Secret (checkov CKV_K8S_35), never env in the spec.
        assert not any(re.search("KEY|SECRET|ENDPOINT", v["name"]) for v in container["env"])
        [secret] = [v["secret"] for v in pod["volumes"] if "secret" in v]
        assert secret["secretName"] == "mlpipe-s3" and secret["defaultMode"] == 0o440
        assert {i["key"] for i in secret["items"]} == {"endpoint", "access-key", "secret-key"}
        assert container["imagePullPolicy"] == "Always" and "@sha256:" in container["image"]


def test_pods_run_as_the_serving_images_user() -> None:
    dockerfile = (ROOT / "images" / "serving" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert users == [(str(SERVING_UID), str(SERVING_UID))]


def test_each_track_serves_its_own_digest_with_flags_the_server_takes(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = named(rendered, "Deployment")
    for name, digest, replicas in (("churn-stable", OLD, 2), ("churn-canary", NEW, 1)):
        deployment = deployments[name]
        assert deployment["spec"]["replicas"] == replicas
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["mlpipe/digest"] == digest
        [container] = template["spec"]["containers"]
        assert container["command"][:2] == ["sh", "-c"]
        assert container["command"][2].endswith('exec python -m serving "$@"')
        args = parse_args(container["args"])
        folder = f"s3://mlpipe-artifacts/registry/churn/versions/{digest}"
        assert (args.model, args.schema) == (
            f"{folder}/model.onnx",
            f"{folder}/feature-schema.json",
        )
        assert (args.name, args.digest, args.host, args.port) == ("churn", digest, "0.0.0.0", 8080)
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        # A rolling update of stable (promote) never drops below its replica count.
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_services_and_budgets_select_exactly_their_tracks_pods(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = named(rendered, "Deployment")
    for track in Track:
        name = f"churn-{track}"
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        service = named(rendered, "Service")[name]
        budget = named(rendered, "PodDisruptionBudget")[name]
        selector = service["spec"]["selector"]
        assert selector == {"mlpipe/model": "churn", "mlpipe/track": track.value}
        assert selector.items() <= pod_labels.items()
        assert budget["spec"]["selector"]["matchLabels"] == selector
        assert budget["spec"]["maxUnavailable"] == 1
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_route_carries_the_split_to_both_services(rendered: list[dict[str, Any]]) -> None:
    [route] = named(rendered, "HTTPRoute").values()
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert set(route) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(route["spec"]) == {"parentRefs", "rules"}
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "mlpipe-gateway"}
    ]
    [rule] = route["spec"]["rules"]
    assert set(rule) == {"matches", "backendRefs"}
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/churn"}}]
    services = named(rendered, "Service")
    weights = {}
    for ref in rule["backendRefs"]:
        assert set(ref) == {"group", "kind", "name", "port", "weight"}
        assert (ref["group"], ref["kind"]) == ("", "Service")
        assert ref["port"] == services[ref["name"]]["spec"]["ports"][0]["port"]
        weights[ref["name"]] = ref["weight"]
    assert weights == {"churn-stable": 75, "churn-canary": 25}


@pytest.mark.parametrize("percent", [0, 1, 10, 33, 50, 99, 100])
def test_weights_sum_to_100_and_follow_the_requested_split(percent: int) -> None:
    route = http_route(spec(), "churn", percent)
    [rule] = route["spec"]["rules"]
    weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
    assert weights == {"churn-stable": 100 - percent, "churn-canary": percent}
    assert sum(weights.values()) == 100


def test_without_a_canary_the_route_has_stable_alone() -> None:
    [rule] = http_route(spec(), "churn", None)["spec"]["rules"]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [("churn-stable", 100)]


@pytest.mark.parametrize("percent", [-1, 101])
def test_a_split_outside_0_to_100_is_refused(percent: int) -> None:
    with pytest.raises(BadInput, match="0-100 percent"):
        split(percent)


def test_the_gateway_listener_and_hostnames_come_from_the_config() -> None:
    configured = spec(
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


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_deploy_role_grants_only_what_the_backend_calls(
    rendered: list[dict[str, Any]],
) -> None:
    role = named(rendered, "Role")["mlpipe-deploy"]
    granted = grants(role["rules"])
    apply = {"create", "patch"}  # server-side apply: a PATCH that may create
    expected = {
        *(("apps", "deployments", v) for v in (*apply, "get", "delete")),
        *(("", "services", v) for v in (*apply, "delete")),
        *(("policy", "poddisruptionbudgets", v) for v in (*apply, "delete")),
        *(("gateway.networking.k8s.io", "httproutes", v) for v in (*apply, "get", "delete")),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("", "pods/proxy", "get"),
    }
    assert granted == expected
    assert not any("*" in grant for grant in granted)
    [binding] = named(rendered, "RoleBinding").values()
    assert binding["roleRef"]["name"] == "mlpipe-deploy"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mlpipe-deploy", "namespace": "mlpipe"}
    ]
    # Every kind a track or the route is made of can be applied; a track can be removed.
    for kind in (*TRACK_KINDS, HTTP_ROUTE):
        assert {(kind.group, kind.plural, v) for v in apply} <= granted, kind
    # A track can be removed, and the route too when a first deploy is rolled back.
    for kind in (*TRACK_KINDS, HTTP_ROUTE):
        assert (kind.group, kind.plural, "delete") in granted, kind
    for step in restore_plan(spec(), "churn", None).delete:
        assert (step[0].group, step[0].plural, "delete") in granted, step


def test_with_prometheus_the_deploy_role_cannot_reach_pods() -> None:
    granted = grants(deploy_rules(spec("serving.prometheus_url=http://prometheus.mon:9090")))
    assert not {resource for _, resource, _ in granted} & {"pods/proxy", "endpointslices"}


def test_a_first_deploy_renders_the_model_as_stable_alone(tmp_path: Path) -> None:
    files = render(tmp_path / "first", "--digest", NEW)
    assert "30-canary.yaml" not in files
    deployment = files["20-stable.yaml"][2]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["mlpipe/digest"] == NEW
    [route] = files["40-http-route.yaml"]
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("churn-stable", 100)]


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


def test_bad_input_exits_2_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--out", str(out), "--digest", NEW, "--set", "serving.cpu=lots")
    result = mlpipe("deploy", "render", "--config", str(CLUSTER), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "key 'serving.cpu'" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_a_config_without_a_serving_section_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = mlpipe("deploy", "render", "--out", str(out), "--digest", NEW)  # config/local.yaml
    assert result.returncode == 2
    assert "key 'serving': required" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("name", ["Churn", "1churn", "churn_v2", "c" * 60])
def test_a_model_name_that_cannot_name_kubernetes_objects_is_refused(name: str) -> None:
    with pytest.raises(BadInput, match="cannot name Kubernetes objects"):
        object_name(name, Track.CANARY)


def test_the_deploy_step_receives_the_kubernetes_settings_in_its_spec() -> None:
    cluster = DeploySpec.from_json_arg(
        workflow_arguments(load_config(CLUSTER))[WorkflowParam.DEPLOY_SPEC]
    )
    assert cluster.kubernetes is not None
    assert (cluster.kubernetes.namespace, cluster.kubernetes.image) == (
        "mlpipe",
        "ghcr.io/mlpipe/serving:0.1.0@sha256:" + "0" * 64,
    )
    assert cluster.kubernetes.credentials_secret == "mlpipe-s3"
    local = DeploySpec.from_json_arg(
        workflow_arguments(load_config(ROOT / "config" / "local.yaml"))[WorkflowParam.DEPLOY_SPEC]
    )
    assert local.kubernetes is None, "no serving section: the local backend"
    with pytest.raises(ConfigError, match="set the `serving:` section instead"):
        load_config(CLUSTER, [f"deploy.kubernetes={json.dumps(spec().model_dump())}"])


# --- the kubernetes backend's decisions (steps/deploy/kube.py), on API-shaped objects ----------


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


def test_without_a_cluster_the_backend_fails_as_infrastructure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ClusterError, match="no Kubernetes API to deploy to") as caught:
        connect(spec(), "churn")
    assert caught.value.exit_code == 3
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "absent").write_text(yaml.safe_dump(kubeconfig))
    with pytest.raises(ClusterError, match="connecting to the Kubernetes API"):
        connect(spec(), "churn")


def test_no_rendered_manifest_carries_a_credential_or_a_bad_label(
    rendered: list[dict[str, Any]],
) -> None:
    for manifest in rendered:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert credential_findings(name, manifest) == []
        pod = manifest.get("spec", {}).get("template", {})
        for meta in (manifest["metadata"], pod.get("metadata", {})):
            for key, value in meta.get("labels", {}).items():
                assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), f"{name}: {key}"


# --- repairing a promotion (steps/deploy/promotion.py) without a cluster ---------------------


def test_a_restore_puts_stable_on_the_registry_version_with_all_traffic_and_no_canary() -> None:
    plan = restore_plan(spec(), "churn", OLD)
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
        f"s3://{spec().bucket}/registry/churn/versions/{OLD}/model.onnx"
    )
    [rule] = plan.apply[3]["spec"]["rules"]
    assert [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] == [("churn-stable", 100)]
    assert plan.delete == [(kind, "churn-canary") for kind in reversed(TRACK_KINDS)]


def test_restoring_no_model_removes_the_route_and_both_tracks() -> None:
    plan = restore_plan(spec(), "churn", None)
    assert plan.apply == []
    assert plan.delete[0] == (HTTP_ROUTE, "churn")
    assert (DEPLOYMENT, "churn-stable") in plan.delete and (
        DEPLOYMENT,
        "churn-canary",
    ) in plan.delete


def test_the_served_digest_is_read_from_the_pod_template() -> None:
    assert served_digest(restore_plan(spec(), "churn", NEW).apply[2]) == NEW
    assert served_digest({"spec": {"template": {"metadata": {}}}}) is None


def test_the_server_gets_the_credentials_from_the_secrets_files(tmp_path: Path) -> None:
    """The pod's command, run by a shell as in the container, exports each Secret file as the
    variable the server reads, then execs the server with the container's arguments."""
    for key, value in (("endpoint", "http://s3:9000"), ("access-key", "AK"), ("secret-key", "s k")):
        (tmp_path / key).write_text(value)
    script = SERVE_FROM_FILES.replace(CREDENTIALS_DIR, str(tmp_path))
    script = script.replace('exec python -m serving "$@"', 'MLPIPE_ARGS="$*" exec env')
    result = subprocess.run(
        ["sh", "-c", script, "serving", "--port", "8080"], capture_output=True, text=True
    )
    environment = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert environment["MLPIPE_S3_ENDPOINT"] == "http://s3:9000"
    assert (environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]) == ("AK", "s k")
    assert environment["MLPIPE_ARGS"] == "--port 8080"
