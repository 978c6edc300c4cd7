"""The serving manifests `mlpipe deploy render` writes: valid for the API server, hardened,
the split in the HTTPRoute, least privilege; the server's credentials from the Secret's
files; and a backend with no API to reach.

No cluster here: core kinds go through `kubernetes-validate --strict`; the HTTPRoute is a
CRD that tool has no schema for, so its structure is asserted field by field instead.
"""

import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.__main__ import parse_args
from steps.core.errors import ClusterError
from steps.deploy.kube import (
    connect,
)
from steps.deploy.manifests import (
    CREDENTIALS_DIR,
    HTTP_ROUTE,
    SERVE_FROM_FILES,
    SERVING_UID,
    TRACK_KINDS,
    Track,
    restore_plan,
)
from tests.integration.workflows.test_hardening import (
    LABEL_VALUE,
    credential_findings,
    kubernetes_validate,
)
from tests.support.commands import mlpipe
from tests.support.kube import grants, kube_spec
from tests.support.paths import CLUSTER
from workflows.install import load_documents

NEW = "a" * 64


OLD = "b" * 64


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
    for step in restore_plan(kube_spec(), "churn", None).delete:
        assert (step[0].group, step[0].plural, "delete") in granted, step


def test_a_first_deploy_renders_the_model_as_stable_alone(tmp_path: Path) -> None:
    files = render(tmp_path / "first", "--digest", NEW)
    assert "30-canary.yaml" not in files
    deployment = files["20-stable.yaml"][2]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["mlpipe/digest"] == NEW
    [route] = files["40-http-route.yaml"]
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("churn-stable", 100)]


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


def test_without_a_cluster_the_backend_fails_as_infrastructure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ClusterError, match="no Kubernetes API to deploy to") as caught:
        connect(kube_spec(), "churn")
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
        connect(kube_spec(), "churn")


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
