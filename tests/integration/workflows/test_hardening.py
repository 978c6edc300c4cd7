"""Hardened by default: every generated manifest, every template, every pod.

The manifests under test are everything mlpipe generates: the compiled Argo YAML for the
local and cluster configs (and a cluster config with an image digest and a webhook), and
the `mlpipe install` output. Checks: pod and container security, a named ServiceAccount,
requests and limits, deadlines, pod and artifact GC, secrets only by secretKeyRef, no
plaintext credential anywhere (generated with real-looking credentials in the environment),
Prometheus metrics that resolve, the strict Argo v4 schema for Argo objects and
`kubernetes-validate --strict` for the core Kubernetes ones. Then the local engine: it
accepts every field this adds, and runs the two it had to learn (optional secretKeyRef,
activeDeadlineSeconds on a daemon).
"""

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.core.store import ArtifactStore
from tests.integration.engine.test_engine_runs import (
    POD_IP,
    SERVER,
    SLEEP,
    dag,
    free_port,
    py,
    task,
    workflow,
)
from tests.support.commands import mlpipe
from tests.support.paths import CLUSTER, LOCAL
from workflows.argo_schema import schema_errors
from workflows.config import ConfigError, load_config
from workflows.engine import EngineContext, NodePhase, WorkflowPhase, check_workflow, run_workflow
from workflows.install import load_documents

DIGEST_IMAGE = "ghcr.io/mlpipe/steps@sha256:" + "ab" * 32
VARIANTS: dict[str, tuple[Path, list[str]]] = {
    "local": (LOCAL, []),
    "cluster": (CLUSTER, []),
    "cluster-pinned": (
        CLUSTER,
        [f"argo.steps_image={DIGEST_IMAGE}", "argo.webhook_secret=team-webhook"],
    ),
}
# Real-looking credentials in every place a careless generator could copy them from.
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAZZZZEXAMPLE12345",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYzzzEXAMPLEKEY",
    "ARGO_TOKEN": "Bearer eyJhbGciOiJSUzI1NiJ9.planted-argo-token.c2lnbmF0dXJl",
    "MLPIPE_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/planted-webhook-secret",
}
INLINE_TOKEN = "inline-planted-token-0123456789"
SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|WEBHOOK)", re.IGNORECASE)
CREDENTIAL_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
    "bearer token": re.compile(r"\bBearer\s+[A-Za-z0-9._-]{12,}"),
}
VARIABLE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CORE_FILES = ("00-service-accounts.yaml", "10-rbac.yaml", "20-artifact-repositories.yaml")


def mlpipe_ok(*args: str, env: dict[str, str]) -> None:
    result = mlpipe(*args, env=env)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every file `mlpipe compile` and `mlpipe install` write, made with credentials planted
    in the environment and an inline token in the config."""
    env = {**os.environ, **PLANTED}
    files: dict[str, Path] = {}
    for variant, (config, overrides) in VARIANTS.items():
        sets = [arg for o in [*overrides, f"argo.token={INLINE_TOKEN}"] for arg in ("--set", o)]
        out = tmp_path_factory.mktemp(f"compiled-{variant}")
        mlpipe_ok("compile", "--config", str(config), *sets, "--out", str(out), env=env)
        files |= {f"{variant}/{path.name}": path for path in sorted(out.glob("*.yaml"))}
    out = tmp_path_factory.mktemp("install")
    mlpipe_ok("install", "--config", str(CLUSTER), "--out", str(out), env=env)
    files |= {f"install/{path.name}": path for path in sorted(out.glob("*.yaml"))}
    return files


@pytest.fixture(scope="module")
def documents(generated: dict[str, Path]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, path in generated.items() for doc in load_documents(path)]


def argo(documents: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in documents if d["apiVersion"].startswith("argoproj.io/")]


def specs(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The workflow specs a manifest carries (a CronWorkflow's is nested)."""
    if manifest["kind"] == "CronWorkflow":
        yield manifest["spec"]["workflowSpec"]
    elif manifest["kind"] in ("Workflow", "WorkflowTemplate"):
        yield manifest["spec"]


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def credential_findings(name: str, manifest: dict[str, Any]) -> list[str]:
    """Plaintext credentials in a manifest: known patterns, literal values in secret-named
    env vars, Secrets that carry data."""
    found = []
    for text in strings(manifest):
        for what, pattern in CREDENTIAL_PATTERNS.items():
            if pattern.search(text):
                found.append(f"{name}: {what}: {text[:60]!r}")
    if manifest.get("kind") == "Secret" and ({"data", "stringData"} & set(manifest)):
        found.append(f"{name}: Secret {manifest['metadata']['name']} carries data")
    for spec in specs(manifest):
        for template in spec.get("templates", []):
            for variable in template.get("container", {}).get("env", []):
                if SECRETISH.search(variable["name"]) and "value" in variable:
                    found.append(f"{name}: env {variable['name']} has a literal value")
    return found


# --- no plaintext credential anywhere ----------------------------------------------------------


def test_no_generated_file_contains_a_credential(generated: dict[str, Path]) -> None:
    assert {name.split("/")[0] for name in generated} == {*VARIANTS, "install"}
    for name, path in generated.items():
        text = path.read_text()
        for variable, value in PLANTED.items():
            assert value not in text, f"{name} contains ${variable}"
            assert value.split()[-1] not in text, f"{name} contains ${variable}"
        assert INLINE_TOKEN not in text, f"{name} contains argo.token"


def test_no_manifest_has_a_credential_pattern_or_a_literal_secret(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    findings = [f for name, doc in documents for f in credential_findings(name, doc)]
    assert findings == []


def test_the_credential_scan_catches_what_it_looks_for(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    name, template = next((n, d) for n, d in documents if d["kind"] == "WorkflowTemplate")
    leaky = copy.deepcopy(template)
    env = leaky["spec"]["templates"][0]["container"]["env"]
    env.append({"name": "AWS_SECRET_ACCESS_KEY", "value": "not-a-ref"})
    env.append({"name": "ENDPOINT", "value": "http://admin:hunter2@minio:9000"})
    leaky["metadata"]["annotations"]["note"] = PLANTED["ARGO_TOKEN"]
    findings = credential_findings(name, leaky)
    assert any("AWS_SECRET_ACCESS_KEY has a literal value" in f for f in findings)
    assert any("password in a URL" in f for f in findings)
    assert any("JWT" in f for f in findings) and any("bearer token" in f for f in findings)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "dg=="},
    }
    assert credential_findings("x", secret) == ["x: Secret s carries data"]


# --- every pod, every template ------------------------------------------------------------------


def test_every_pod_is_hardened(documents: list[tuple[str, dict[str, Any]]]) -> None:
    checked = 0
    for name, manifest in argo(documents):
        for spec in specs(manifest):
            if "templates" not in spec:
                # A run of the installed template: nothing of its own may weaken it; it repeats
                # the template's identity and pod security (checkov reads the run alone).
                own = {"workflowTemplateRef", "arguments", "serviceAccountName", "securityContext"}
                assert set(spec) <= own, name
                assert spec["securityContext"]["runAsNonRoot"] is True, name
                assert spec["serviceAccountName"] not in ("", "default"), name
                continue
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
            assert pod["fsGroup"] > 0 and pod["seccompProfile"] == {"type": "RuntimeDefault"}
            assert spec["serviceAccountName"] not in ("", "default"), name
            assert spec["podGC"]["strategy"] == "OnPodSuccess", name
            assert spec["podGC"]["deleteDelayDuration"], name
            assert spec["artifactGC"] == {
                "strategy": "OnWorkflowDeletion",
                "serviceAccountName": "mlpipe-artifact-gc",
            }, name
            assert spec["activeDeadlineSeconds"] > 0 and spec["archiveLogs"] is True, name
            names = {template["name"] for template in spec["templates"]}
            assert spec["onExit"] in names, name
            for template in spec["templates"]:
                if "container" in template:
                    check_container_template(f"{name}: {template['name']}", template, spec)
                    checked += 1
    assert checked >= 3 * 9, "every variant's step templates were checked"


def check_container_template(where: str, template: dict[str, Any], spec: dict[str, Any]) -> None:
    container = template["container"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True, where
    assert security["readOnlyRootFilesystem"] is True, where
    assert security["allowPrivilegeEscalation"] is False, where
    assert security["capabilities"] == {"drop": ["ALL"]}, where
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, where
    assert template["serviceAccountName"] not in ("", "default"), where
    deadline = template["activeDeadlineSeconds"]
    assert 0 < deadline <= spec["activeDeadlineSeconds"], where
    pod_ip = {"fieldRef": {"fieldPath": "status.podIP"}}
    for variable in container.get("env", []):
        source = variable.get("valueFrom")
        if source is not None:  # credentials from Secrets; a daemon's own IP (downward API)
            assert set(source) == {"secretKeyRef"} or source == pod_ip, f"{where}: {variable}"
    check_metrics(where, template, spec)


def check_metrics(where: str, template: dict[str, Any], spec: dict[str, Any]) -> None:
    """Each gauge has a name Prometheus accepts and a help text, and every variable it
    reads is an output of this template or a parameter of the workflow."""
    outputs = {p["name"] for p in template.get("outputs", {}).get("parameters", [])}
    arguments = {p["name"] for p in spec.get("arguments", {}).get("parameters", [])}
    metrics = template["metrics"]["prometheus"]
    assert any(m["name"] == "mlpipe_step_duration_seconds" for m in metrics), where
    for metric in metrics:
        assert METRIC_NAME.fullmatch(metric["name"]) and metric["help"].strip(), where
        for variable in VARIABLE.findall(" ".join(strings(metric))):
            if variable.startswith("outputs.parameters."):
                assert variable.split(".", 2)[2] in outputs, f"{where}: {variable}"
            elif variable.startswith("workflow.parameters."):
                assert variable.split(".", 2)[2] in arguments, f"{where}: {variable}"
            else:
                assert variable in ("duration", "status"), f"{where}: {variable}"


def test_key_numbers_become_gauges_with_help(documents: list[tuple[str, dict[str, Any]]]) -> None:
    template = next(
        d for n, d in documents if n.startswith("cluster/") and d["kind"] == "WorkflowTemplate"
    )
    gauges = {
        (t["name"], m["name"]): m
        for t in template["spec"]["templates"]
        for m in t.get("metrics", {}).get("prometheus", [])
    }
    assert gauges[("model-check", "mlpipe_validation_auc")]["gauge"] == {
        "realtime": False,
        "value": "{{outputs.parameters.valid_auc}}",
    }
    assert gauges[("model-check", "mlpipe_validation_auc")]["when"] == "{{status}} == Succeeded"
    audit = gauges[("audit", "mlpipe_audit_critical_failures")]
    assert "when" not in audit, "the audit's failures are reported when the gate fails"
    assert ("evaluate", "mlpipe_test_auc") in gauges
    duration = gauges[("deploy", "mlpipe_step_duration_seconds")]
    assert duration["gauge"] == {"realtime": True, "value": "{{duration}}"}
    labels = {label["key"]: label["value"] for label in duration["labels"]}
    assert labels == {"step": "deploy", "model": "{{workflow.parameters.model-name}}"}


def test_deploy_runs_under_its_own_service_account(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    template = next(
        d for n, d in documents if n.startswith("cluster/") and d["kind"] == "WorkflowTemplate"
    )
    accounts = {
        t["name"]: t.get("serviceAccountName")
        for t in template["spec"]["templates"]
        if "container" in t
    }
    assert accounts.pop("deploy") == "mlpipe-deploy"
    assert set(accounts.values()) == {"mlpipe-steps"}


LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def test_every_label_is_one_the_api_server_accepts(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    """Labels are validated on create: one bad value and the run is refused."""
    checked = 0
    for name, manifest in documents:
        metadata = [manifest["metadata"]]
        for spec in specs(manifest):
            metadata += [spec.get("workflowMetadata", {}), spec.get("podMetadata", {})]
        for meta in metadata:
            for key, value in meta.get("labels", {}).items():
                assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), f"{name}: {key}={value}"
                checked += 1
    pinned = next(d for n, d in documents if n == "cluster-pinned/workflow.yaml")
    assert pinned["metadata"]["labels"]["mlpipe/code-version"].endswith("ab" * 20)
    assert checked > 20


def test_images_are_configurable_to_digests(documents: list[tuple[str, dict[str, Any]]]) -> None:
    images = {
        t["container"]["image"]
        for name, doc in argo(documents)
        if name.startswith("cluster-pinned/")
        for spec in specs(doc)
        for t in spec.get("templates", [])
        if "container" in t
    }
    assert images == {DIGEST_IMAGE}
    with pytest.raises(ConfigError, match="needs a tag or an @sha256: digest"):
        load_config(CLUSTER, ["argo.steps_image=ghcr.io/mlpipe/steps"])
    with pytest.raises(ConfigError, match="`default` ServiceAccount is shared"):
        load_config(CLUSTER, ["argo.service_account=default"])
    with pytest.raises(ConfigError, match="exceeds active_deadline_seconds"):
        load_config(CLUSTER, ["argo.step_deadline_seconds=99999"])
    with pytest.raises(ConfigError, match=r"key 'argo\.server'"):
        load_config(CLUSTER, ["argo.server=https://admin:hunter2@argo:2746"])


def test_the_webhook_url_comes_from_an_optional_secret_key_ref(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    template = next(
        d
        for n, d in documents
        if n.startswith("cluster-pinned/") and d["kind"] == "WorkflowTemplate"
    )
    summary = next(
        t for t in template["spec"]["templates"] if t["name"] == template["spec"]["onExit"]
    )
    [webhook] = [v for v in summary["container"]["env"] if v["name"] == "MLPIPE_WEBHOOK_URL"]
    assert webhook["valueFrom"] == {
        "secretKeyRef": {"name": "team-webhook", "key": "url", "optional": True}
    }
    local = next(
        d for n, d in documents if n.startswith("local/") and d["kind"] == "WorkflowTemplate"
    )
    exit_template = next(
        t for t in local["spec"]["templates"] if t["name"] == local["spec"]["onExit"]
    )
    assert all(v["name"] != "MLPIPE_WEBHOOK_URL" for v in exit_template["container"]["env"])


# --- schemas --------------------------------------------------------------------------------------


def test_every_argo_manifest_validates_strictly(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    manifests = argo(documents)
    assert {d["kind"] for _, d in manifests} == {"Workflow", "WorkflowTemplate", "CronWorkflow"}
    for name, manifest in manifests:
        assert schema_errors(manifest) == [], name


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run(
        [str(tool), "--strict", *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def test_core_kubernetes_manifests_pass_kubernetes_validate_strict(
    generated: dict[str, Path], tmp_path: Path
) -> None:
    core = [generated[f"install/{name}"] for name in CORE_FILES]
    core.append(generated["install/30-memoization-cache.yaml"])
    result = kubernetes_validate(*core)
    assert result.returncode == 0, result.stdout + result.stderr
    resources = sum(len(load_documents(path)) for path in core)
    passed = [
        line for line in result.stdout.splitlines() if line.startswith("INFO") and "passed" in line
    ]
    assert len(passed) == resources, result.stdout
    assert "WARN" not in result.stdout, "every core kind has a schema"
    broken = yaml.safe_load(core[0].read_text().split("---")[0])
    broken["automountToken"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken))
    rejected = kubernetes_validate(bad)
    assert rejected.returncode != 0 and "automountToken" in rejected.stdout


# --- the local engine accepts all of it ------------------------------------------------------


def test_the_local_engine_accepts_every_compiled_field(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    for variant in VARIANTS:
        kinds = {d["kind"]: d for n, d in documents if n.startswith(f"{variant}/")}
        template = kinds["WorkflowTemplate"]
        plan = check_workflow(kinds["Workflow"], {template["metadata"]["name"]: template})
        assert plan.on_exit is not None and plan.on_exit.entry.template.name == "summary"


@pytest.fixture
def ctx(store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path) -> EngineContext:
    return EngineContext(
        store=store,
        key_format="{{workflow.name}}/{{pod.name}}",
        workdir=tmp_path / "runs",
        parallelism=4,
        env={**os.environ, **s3_env, "HOOK": "from-the-host"},
        secrets={"present": {"url": "https://hook.example/x"}},
        stop_grace_seconds=1.0,
    )


ECHO_ENV = """
import os, pathlib
out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True, exist_ok=True)
(out / 'hook').write_text(os.environ.get('HOOK', 'unset'))
"""


def test_an_optional_secret_that_is_missing_leaves_the_variable_unset(ctx: EngineContext) -> None:
    def reading(secret: str, optional: bool) -> dict[str, Any]:
        template = py(f"read-{secret}", ECHO_ENV, outputs=("hook",))
        ref = {"name": secret, "key": "url", "optional": optional}
        template["container"]["env"].append({"name": "HOOK", "valueFrom": {"secretKeyRef": ref}})
        return template

    manifest = workflow(
        dag("main", task("present", "read-present"), task("absent", "read-absent")),
        reading("present", optional=True),
        reading("absent", optional=True),
    )
    result = run_workflow(manifest, {}, ctx)
    assert result.succeeded, result.message
    assert result.node("present").parameters["hook"] == "https://hook.example/x"
    assert result.node("absent").parameters["hook"] == "unset", "no leak from the host env"
    required = workflow(dag("main", task("absent", "read-absent")), reading("absent", False))
    with pytest.raises(Exception, match="secret 'absent' key 'url' is not available locally"):
        run_workflow(required, {}, ctx)


def test_a_daemon_past_its_active_deadline_fails_its_dag(ctx: EngineContext) -> None:
    port = str(free_port())
    server = py("server", SERVER, port, daemon=True, activeDeadlineSeconds=1)
    server["container"]["env"].append(POD_IP)
    server["container"]["readinessProbe"] = {"tcpSocket": {"port": int(port)}, "periodSeconds": 1}
    manifest = workflow(
        dag("main", task("server", "server"), task("work", "sleep", "server")),
        server,
        py("sleep", SLEEP, "3", activeDeadlineSeconds=60),
    )
    result = run_workflow(manifest, {}, ctx)
    assert result.phase is WorkflowPhase.FAILED
    daemon = result.node("server")
    assert daemon.phase is NodePhase.FAILED
    assert daemon.message == "daemon activeDeadlineSeconds=1 exceeded"
    work = result.node("work")
    assert daemon.finished_at is not None and work.finished_at is not None
    assert daemon.finished_at < work.finished_at, "stopped by its deadline, not by its DAG"
    assert "server failed: daemon activeDeadlineSeconds=1 exceeded" in result.message
