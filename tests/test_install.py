"""`mlpipe install --out DIR`: the namespace's ServiceAccounts, RBAC, ConfigMaps, templates."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.argo_schema import validator_for
from workflows.compiler import compile_manifests
from workflows.config import ConfigError, load_config
from workflows.install import install_manifests, load_documents

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "config" / "cluster.yaml"


def mlpipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """What `mlpipe install` wrote, read back from disk, by file name."""
    out = tmp_path_factory.mktemp("install")
    result = mlpipe("install", "--config", str(CLUSTER), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(path) for path in sorted(out.glob("*.yaml"))]
    return {path.name: load_documents(path) for path in sorted(out.glob("*.yaml"))}


def by_kind(installed: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for docs in installed.values()
        for doc in docs
        if doc["kind"] == kind
    }


def test_every_object_is_in_the_configured_namespace_in_apply_order(
    installed: dict[str, list[dict[str, Any]]],
) -> None:
    kinds = [doc["kind"] for docs in installed.values() for doc in docs]
    # ServiceAccounts before the bindings naming them; ConfigMaps before templates using them.
    assert kinds.index("ServiceAccount") < kinds.index("RoleBinding")
    assert kinds.index("ConfigMap") < kinds.index("WorkflowTemplate")
    assert {"CronWorkflow", "WorkflowTemplate", "Role", "Secret"} <= set(kinds)
    for docs in installed.values():
        for doc in docs:
            assert doc["metadata"]["namespace"] == "mlpipe", doc["metadata"]


def test_service_accounts_for_steps_deploy_and_submitters(
    installed: dict[str, list[dict[str, Any]]],
) -> None:
    accounts = by_kind(installed, "ServiceAccount")
    assert set(accounts) == {
        "mlpipe-steps",
        "mlpipe-deploy",
        "mlpipe-submitter",
        "mlpipe-serving",
        "mlpipe-artifact-gc",
    }
    assert accounts["mlpipe-submitter"]["automountServiceAccountToken"] is False
    assert accounts["mlpipe-serving"]["automountServiceAccountToken"] is False
    [token] = by_kind(installed, "Secret").values()
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["name"] == "mlpipe-submitter.service-account-token"
    assert token["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "mlpipe-submitter"
    }
    assert "data" not in token and "stringData" not in token, "Kubernetes fills in the token"


def test_rbac_is_least_privilege(installed: dict[str, list[dict[str, Any]]]) -> None:
    roles = by_kind(installed, "Role")
    executor = roles["mlpipe-executor"]["rules"]
    assert executor == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]
    granted = {
        (group, resource, verb)
        for rule in roles["mlpipe-submitter"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("argoproj.io", "workflows", "create") in granted
    assert ("", "pods/log", "get") in granted
    # `mlpipe schedule apply` creates the CronWorkflow or updates it: the one update granted.
    assert {("argoproj.io", "cronworkflows", v) for v in ("create", "update", "get")} <= granted
    for forbidden in ("delete", "update", "patch", "*"):
        assert not any(
            verb == forbidden and resource != "cronworkflows" for _, resource, verb in granted
        ), forbidden
    assert not any(verb in ("delete", "patch") for _, _, verb in granted)
    assert not any(resource in ("secrets", "*") for _, resource, _ in granted)
    bindings = by_kind(installed, "RoleBinding")
    accounts = by_kind(installed, "ServiceAccount")
    for name, binding in bindings.items():
        assert binding["roleRef"]["name"] in roles
        for subject in binding["subjects"]:
            if name == "mlpipe-memoize-writer":
                continue
            assert subject["name"] in accounts and subject["namespace"] == "mlpipe"
    subjects = {s["name"] for s in bindings["mlpipe-executor"]["subjects"]}
    assert subjects == {"mlpipe-steps", "mlpipe-deploy"}, "the submitter runs no pods"


def test_artifact_gc_and_the_memoize_cache_get_exactly_the_rights_argo_uses(
    installed: dict[str, list[dict[str, Any]]],
) -> None:
    """The GC pod runs as `artifactGC.serviceAccountName` (controller/artifact_gc.go) and
    calls what Argo's docs list; the controller saves a cache entry with Get then Update
    (controller/cache/configmap_cache.go), on the one cache ConfigMap."""
    roles, bindings = by_kind(installed, "Role"), by_kind(installed, "RoleBinding")
    template = by_kind(installed, "WorkflowTemplate")["mlpipe-training"]
    gc_account = template["spec"]["artifactGC"]["serviceAccountName"]
    assert roles[gc_account]["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowartifactgctasks"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowartifactgctasks/status"],
            "verbs": ["patch"],
        },
    ]
    assert [s["name"] for s in bindings[gc_account]["subjects"]] == [gc_account]
    assert by_kind(installed, "ServiceAccount")[gc_account]["automountServiceAccountToken"]
    cache = by_kind(installed, "ConfigMap")["mlpipe-memoize"]
    assert roles["mlpipe-memoize-writer"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get", "update"],
            "resourceNames": [cache["metadata"]["name"]],
        }
    ]
    assert bindings["mlpipe-memoize-writer"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "argo", "namespace": "argo"}
    ]


def test_the_artifact_repository_references_credentials_and_sets_key_format(
    installed: dict[str, list[dict[str, Any]]],
) -> None:
    config = load_config(CLUSTER).pipeline
    configmap = by_kind(installed, "ConfigMap")["artifact-repositories"]
    assert configmap["metadata"]["annotations"] == {
        "workflows.argoproj.io/default-artifact-repository": "mlpipe"
    }
    repository = yaml.safe_load(configmap["data"]["mlpipe"])
    s3 = repository["s3"]
    assert repository["archiveLogs"] is True
    assert s3["endpoint"] == "minio.mlpipe.svc:9000" and s3["insecure"] is True
    assert s3["bucket"] == config.storage.bucket
    assert s3["keyFormat"] == config.storage.key_format
    assert s3["accessKeySecret"] == {"name": "mlpipe-s3", "key": "access-key"}
    assert s3["secretKeySecret"] == {"name": "mlpipe-s3", "key": "secret-key"}
    assert not {"accessKey", "secretKey"} & set(s3), "credentials only by reference"


def test_the_artifact_repository_is_a_valid_argo_artifact_repository(
    installed: dict[str, list[dict[str, Any]]],
) -> None:
    repository = yaml.safe_load(
        by_kind(installed, "ConfigMap")["artifact-repositories"]["data"]["mlpipe"]
    )
    validator = validator_for("ArtifactRepository")
    assert list(validator.iter_errors(repository)) == []
    repository["s3"]["accesKeySecret"] = repository["s3"].pop("accessKeySecret")
    assert list(validator.iter_errors(repository)), "a misspelt key is caught"


def test_the_memoization_cache_is_labelled_for_the_controller(
    installed: dict[str, list[dict[str, Any]]],
) -> None:
    cache = by_kind(installed, "ConfigMap")["mlpipe-memoize"]
    assert cache["metadata"]["labels"]["workflows.argoproj.io/configmap-type"] == "Cache"
    template = by_kind(installed, "WorkflowTemplate")["mlpipe-training"]
    caches = {
        t["memoize"]["cache"]["configMap"]["name"]
        for t in template["spec"]["templates"]
        if "memoize" in t
    }
    assert caches <= {"mlpipe-memoize"}, "templates memoize into the installed cache"


def test_the_templates_are_the_compiled_ones(installed: dict[str, list[dict[str, Any]]]) -> None:
    compiled = compile_manifests(load_config(CLUSTER))
    assert by_kind(installed, "WorkflowTemplate")["mlpipe-training"] == compiled.template
    [cron] = by_kind(installed, "CronWorkflow").values()
    assert cron == compiled.cron


def test_install_without_an_s3_endpoint_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = mlpipe("install", "--out", str(out))  # config/local.yaml: embedded storage
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "key 'storage.endpoint': required for install" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_install_refuses_credentials_in_the_endpoint_url_without_echoing_them() -> None:
    config = load_config(CLUSTER, ["storage.endpoint=http://admin:hunter2@minio:9000"])
    with pytest.raises(ConfigError, match="credentials in the URL") as caught:
        install_manifests(config)
    assert "hunter2" not in str(caught.value)
