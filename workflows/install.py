"""`mlpipe install --out DIR`: everything the pipeline needs in its namespace, as YAML.

For `kubectl apply -f DIR` by a platform engineer, in file-name order:
- ServiceAccounts: one for the steps, one for deploy (so rights to roll a model out never
  reach the other steps), one for people and CI that submit runs (it runs no pod, so it
  mounts no token), plus the submitter's long-lived token Secret, filled in by Kubernetes;
- Roles and RoleBindings, least privilege: the executor of every step pod may only create
  and patch `workflowtaskresults` (how outputs and progress reach the controller); the
  submitter may create and read workflows, read the WorkflowTemplate and pod logs;
- the `artifact-repositories` ConfigMap: endpoint, bucket, region, keyFormat and *references*
  to the credentials Secret, never the credentials;
- the memoization cache ConfigMap, labelled as a cache for the controller;
- the WorkflowTemplate and the CronWorkflow, compiled from the same config.

Secrets with credentials are not written here: they are created from files by the user, so
no credential ever sits in generated YAML (tests/test_hardening.py scans for it).
"""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from workflows.compiler import compile_manifests, render
from workflows.config import ConfigError, LoadedConfig

CACHE_LABEL = "workflows.argoproj.io/configmap-type"
DEFAULT_REPOSITORY_ANNOTATION = "workflows.argoproj.io/default-artifact-repository"
TOKEN_SUFFIX = ".service-account-token"
"""Argo finds a ServiceAccount's token Secret by this name (`<account>.service-account-token`)."""
EXECUTOR_ROLE = "mlpipe-executor"
ACCESS_KEY = "access-key"
SECRET_KEY = "secret-key"


def install_manifests(config: LoadedConfig) -> dict[str, list[dict[str, Any]]]:
    """File name -> the Kubernetes objects it holds."""
    pipeline = config.pipeline
    argo = pipeline.argo
    compiled = compile_manifests(config)
    accounts = [argo.service_account, argo.deploy_service_account]
    return {
        "00-service-accounts.yaml": [
            *(_service_account(config, name, mount_token=True) for name in accounts),
            _service_account(config, argo.submit_service_account, mount_token=False),
            _token_secret(config, argo.submit_service_account),
        ],
        "10-rbac.yaml": [
            _role(
                config,
                EXECUTOR_ROLE,
                [_rule("argoproj.io", ["workflowtaskresults"], ["create", "patch"])],
            ),
            _binding(config, EXECUTOR_ROLE, accounts),
            _role(
                config,
                argo.submit_service_account,
                [
                    _rule("argoproj.io", ["workflows"], ["create", "get", "list", "watch"]),
                    _rule("argoproj.io", ["workflowtemplates"], ["get", "list"]),
                    _rule("argoproj.io", ["cronworkflows"], ["get", "list"]),
                    # The Argo server reads logs with the caller's own rights.
                    _rule("", ["pods"], ["get", "list", "watch"]),
                    _rule("", ["pods/log"], ["get"]),
                ],
            ),
            _binding(config, argo.submit_service_account, [argo.submit_service_account]),
        ],
        "20-artifact-repositories.yaml": [artifact_repositories(config)],
        "30-memoization-cache.yaml": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _metadata(config, argo.memoize_cache, {CACHE_LABEL: "Cache"}),
            }
        ],
        "40-workflow-template.yaml": [compiled.template],
        "50-cron-workflow.yaml": [compiled.cron],
    }


def artifact_repositories(config: LoadedConfig) -> dict[str, Any]:
    """The ConfigMap the templates' `artifactRepositoryRef` names, marked as the default."""
    pipeline = config.pipeline
    storage = pipeline.storage
    reference = pipeline.argo.artifact_repository
    if storage.endpoint is None:
        raise ConfigError(
            f"{config.path}: key 'storage.endpoint': required for install (the S3 endpoint the "
            "pods reach, e.g. http://minio.mlpipe.svc:9000)"
        )
    endpoint = urlsplit(storage.endpoint)
    if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
        raise ConfigError(
            f"{config.path}: key 'storage.endpoint': {storage.endpoint!r} needs http:// or "
            "https:// and a host"
        )
    if endpoint.username or endpoint.password:
        raise ConfigError(
            f"{config.path}: key 'storage.endpoint': credentials in the URL; put them in the "
            f"Secret {storage.credentials_secret!r} instead"
        )
    secret = storage.credentials_secret
    repository = {
        "archiveLogs": True,
        "s3": {
            "endpoint": endpoint.netloc,
            "bucket": storage.bucket,
            "region": storage.region,
            "insecure": endpoint.scheme == "http",
            "keyFormat": storage.key_format,
            "accessKeySecret": {"name": secret, "key": ACCESS_KEY},
            "secretKeySecret": {"name": secret, "key": SECRET_KEY},
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            **_metadata(config, reference.config_map),
            "annotations": {DEFAULT_REPOSITORY_ANNOTATION: reference.key},
        },
        "data": {reference.key: render(repository)},
    }


def write_install(manifests: Mapping[str, list[dict[str, Any]]], out: Path) -> list[Path]:
    """Write each file whole (temp file, then rename): an interrupted install leaves no
    half-written manifest for `kubectl apply` to pick up."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, documents in manifests.items():
        path = out / name
        text = "---\n".join(render(document) for document in documents)
        handle, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(tmp, path)
        written.append(path)
    return written


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _metadata(
    config: LoadedConfig, name: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": config.pipeline.argo.namespace,
        "labels": {"app.kubernetes.io/name": "mlpipe", **(labels or {})},
    }


def _service_account(config: LoadedConfig, name: str, *, mount_token: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(config, name),
        "automountServiceAccountToken": mount_token,
    }


def _token_secret(config: LoadedConfig, account: str) -> dict[str, Any]:
    """An empty token Secret: Kubernetes writes the token into it (no credential here)."""
    metadata = _metadata(config, account + TOKEN_SUFFIX)
    metadata["annotations"] = {"kubernetes.io/service-account.name": account}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/service-account-token",
    }


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def _role(config: LoadedConfig, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(config, name),
        "rules": rules,
    }


def _binding(config: LoadedConfig, role: str, accounts: list[str]) -> dict[str, Any]:
    namespace = config.pipeline.argo.namespace
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(config, role),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
            for account in accounts
        ],
    }
