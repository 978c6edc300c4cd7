"""`mlpipe install --out DIR`: everything the pipeline needs in its namespace, as YAML.

For `kubectl apply -f DIR` by a platform engineer, in file-name order:
- ServiceAccounts: one for the steps, one for deploy (so rights to roll a model out never
  reach the other steps), one for people and CI that submit runs (it runs no pod, so it
  mounts no token), plus the submitter's long-lived token Secret, filled in by Kubernetes;
  with a `serving:` section also the model servers' own (they mount no token either);
- Roles and RoleBindings, least privilege: the executor of every step pod may only create
  and patch `workflowtaskresults` (how outputs and progress reach the controller); the
  submitter may create and read workflows, read the WorkflowTemplate and pod logs, and
  create or update the CronWorkflow (`mlpipe schedule apply`); the deploy task may touch
  only the serving objects its kubernetes backend applies (steps/deploy/manifests.py);
- the `artifact-repositories` ConfigMap: endpoint, bucket, region, keyFormat and *references*
  to the credentials Secret, never the credentials;
- the memoization cache ConfigMap, labelled as a cache for the controller, and the right of
  the controller's ServiceAccount to update it (Argo's own install grants it only get, list
  and watch on ConfigMaps: a memoized step would end in Error when its entry is saved);
- the artifact GC pods' ServiceAccount, allowed to read its `workflowartifactgctasks` and
  report their status (without it the GC fails and its finalizer blocks deleting the run);
- the WorkflowTemplate and the CronWorkflow, compiled from the same config.

Secrets with credentials are not written here: they are created from files by the user, so
no credential ever sits in generated YAML (tests/test_hardening.py scans for it).
"""

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from steps.deploy.manifests import (
    ServedModel,
    Track,
    deploy_rbac,
    http_route,
    metadata,
    network_policy,
    role,
    role_binding,
    rule,
    service_account,
    track_manifests,
)
from workflows.compiler import compile_manifests, render
from workflows.config import ConfigError, LoadedConfig
from workflows.pipeline import ARTIFACT_GC_ACCOUNT

CACHE_LABEL = "workflows.argoproj.io/configmap-type"
DEFAULT_REPOSITORY_ANNOTATION = "workflows.argoproj.io/default-artifact-repository"
TOKEN_SUFFIX = ".service-account-token"
"""Argo finds a ServiceAccount's token Secret by this name (`<account>.service-account-token`)."""
EXECUTOR_ROLE = "mlpipe-executor"
CACHE_WRITER_ROLE = "mlpipe-memoize-writer"
ACCESS_KEY = "access-key"
SECRET_KEY = "secret-key"


def install_manifests(config: LoadedConfig) -> dict[str, list[dict[str, Any]]]:
    """File name -> the Kubernetes objects it holds."""
    pipeline = config.pipeline
    argo = pipeline.argo
    namespace = argo.namespace
    compiled = compile_manifests(config)
    accounts = [argo.service_account, argo.deploy_service_account]
    serving = config.deploy_spec().kubernetes
    controller_namespace, controller = argo.controller_service_account.split(":")
    return {
        "00-service-accounts.yaml": [
            *(service_account(namespace, name, mount_token=True) for name in accounts),
            service_account(namespace, argo.submit_service_account, mount_token=False),
            service_account(namespace, ARTIFACT_GC_ACCOUNT, mount_token=True),
            _token_secret(config, argo.submit_service_account),
            *(
                [service_account(namespace, serving.service_account, mount_token=False)]
                if serving
                else []
            ),
        ],
        "10-rbac.yaml": [
            role(
                namespace,
                EXECUTOR_ROLE,
                [rule("argoproj.io", ["workflowtaskresults"], ["create", "patch"])],
            ),
            role_binding(namespace, EXECUTOR_ROLE, accounts),
            role(
                namespace,
                argo.submit_service_account,
                [
                    rule("argoproj.io", ["workflows"], ["create", "get", "list", "watch"]),
                    rule("argoproj.io", ["workflowtemplates"], ["get", "list"]),
                    # `mlpipe schedule apply` creates the CronWorkflow or updates it in place.
                    rule("argoproj.io", ["cronworkflows"], ["create", "update", "get", "list"]),
                    # The Argo server reads logs with the caller's own rights.
                    rule("", ["pods"], ["get", "list", "watch"]),
                    rule("", ["pods/log"], ["get"]),
                ],
            ),
            role_binding(namespace, argo.submit_service_account, [argo.submit_service_account]),
            # What `argoexec artifact delete` calls (Argo's docs, walk-through/artifacts).
            role(
                namespace,
                ARTIFACT_GC_ACCOUNT,
                [
                    rule("argoproj.io", ["workflowartifactgctasks"], ["list", "watch"]),
                    rule("argoproj.io", ["workflowartifactgctasks/status"], ["patch"]),
                ],
            ),
            role_binding(namespace, ARTIFACT_GC_ACCOUNT, [ARTIFACT_GC_ACCOUNT]),
            # controller/cache/configmap_cache.go: Get, then Update with the new entry.
            role(
                namespace,
                CACHE_WRITER_ROLE,
                [
                    {
                        **rule("", ["configmaps"], ["get", "update"]),
                        "resourceNames": [argo.memoize_cache],
                    }
                ],
            ),
            {
                **role_binding(namespace, CACHE_WRITER_ROLE, []),
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": controller,
                        "namespace": controller_namespace,
                    }
                ],
            },
            *(deploy_rbac(serving, argo.deploy_service_account) if serving else []),
        ],
        **(
            {"15-network-policy.yaml": [network_policy(serving, pipeline.model_name)]}
            if serving
            else {}
        ),
        "20-artifact-repositories.yaml": [artifact_repositories(config)],
        "30-memoization-cache.yaml": [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata(namespace, argo.memoize_cache, {CACHE_LABEL: "Cache"}),
            }
        ],
        "40-workflow-template.yaml": [compiled.template],
        "50-cron-workflow.yaml": [compiled.cron],
    }


DIGEST = re.compile(r"[0-9a-f]{64}")


def rollout_manifests(
    config: LoadedConfig, digest: str, stable_digest: str | None, canary_percent: int
) -> dict[str, list[dict[str, Any]]]:
    """File name -> objects, for `mlpipe deploy render`: what the deploy task's kubernetes
    backend applies while `digest` is the canary next to `stable_digest` at `canary_percent`,
    or, without a stable version, what a first deploy of `digest` leaves behind."""
    pipeline = config.pipeline
    spec = config.deploy_spec().kubernetes
    if spec is None:
        raise ConfigError(
            f"{config.path}: key 'serving': required to render the serving manifests "
            "(see config/cluster.yaml)"
        )
    for option, value in (("--digest", digest), ("--stable-digest", stable_digest)):
        if value is not None and not DIGEST.fullmatch(value):
            raise ConfigError(f"{option} {value!r}: expected the ONNX file's sha256 (64 hex)")
    if not 0 <= canary_percent <= 100:
        raise ConfigError(f"--canary-percent {canary_percent}: expected 0-100")
    deploy_account = pipeline.argo.deploy_service_account
    candidate = ServedModel.in_registry(spec.bucket, pipeline.model_name, digest)
    files = {
        "00-service-accounts.yaml": [
            service_account(spec.namespace, spec.service_account, mount_token=False),
            service_account(spec.namespace, deploy_account, mount_token=True),
        ],
        "10-deploy-rbac.yaml": deploy_rbac(spec, deploy_account),
        "15-network-policy.yaml": [network_policy(spec, pipeline.model_name)],
    }
    if stable_digest is None:
        files["20-stable.yaml"] = track_manifests(spec, candidate, Track.STABLE)
        files["40-http-route.yaml"] = [http_route(spec, pipeline.model_name, None)]
        return files
    stable = ServedModel.in_registry(spec.bucket, pipeline.model_name, stable_digest)
    files["20-stable.yaml"] = track_manifests(spec, stable, Track.STABLE)
    files["30-canary.yaml"] = track_manifests(spec, candidate, Track.CANARY)
    files["40-http-route.yaml"] = [http_route(spec, pipeline.model_name, canary_percent)]
    return files


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
            **metadata(pipeline.argo.namespace, reference.config_map),
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


def _token_secret(config: LoadedConfig, account: str) -> dict[str, Any]:
    """An empty token Secret: Kubernetes writes the token into it (no credential here)."""
    meta = metadata(config.pipeline.argo.namespace, account + TOKEN_SUFFIX)
    meta["annotations"] = {"kubernetes.io/service-account.name": account}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "kubernetes.io/service-account-token",
    }
