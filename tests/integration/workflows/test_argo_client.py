"""`mlpipe submit/status/watch/logs/list` against a real HTTP server speaking Argo's API.

The server (tests/support/argo_server.py) runs on loopback; the CLI runs as a subprocess, exactly as
a user runs it, so error cases are checked as the user sees them: one line on stderr, an
exit code, no traceback.
"""

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from tests.support.argo_server import ArgoTestServer
from tests.support.paths import CLUSTER, ROOT
from workflows.argo_client import ArgoClient, ArgoError, argo_settings
from workflows.cli import app
from workflows.config import ConfigError, load_config
from workflows.engine.naming import node_id, pod_name
from workflows.pipeline import build_workflow
from workflows.submission import submission_manifest

# Hera 7.1's create_workflow calls pydantic's deprecated `.json()`; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The `json` method is deprecated")

TOKEN = "test-token"
RUN = "churn-training-abcde"
DIGEST = "d530c47f40b1c4992bdbbc9f767880b4e8c8a63f7ee330298e86535ba814072e"


def mlpipe(
    *args: str, server: str, token: str | None = TOKEN, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARGO_TOKEN"}
    env.update({"MLPIPE_ARGO_SERVER": server, "COLUMNS": "200", **(extra_env or {})})
    if token is not None:
        env["ARGO_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", *args, "--config", str(CLUSTER)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


RUNNER = CliRunner()


def mlpipe_here(*args: str, server: str) -> Result:
    """The same CLI in this process: for the success paths, where start-up time is all a
    subprocess would add (the error paths run as subprocesses, as a user sees them)."""
    env = {"MLPIPE_ARGO_SERVER": server, "ARGO_TOKEN": TOKEN, "COLUMNS": "200"}
    return RUNNER.invoke(app, [*args, "--config", str(CLUSTER)], env=env)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The CLI failed as a user should see it; returns the error line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def node(
    display: str, template: str, phase: str, *, parent: str = "", **extra: Any
) -> tuple[str, dict[str, Any]]:
    name = f"{RUN}{parent}.{display}"
    body = {
        "id": node_id(RUN, name),
        "name": name,
        "displayName": display,
        "type": "Pod",
        "templateName": template,
        "phase": phase,
        "startedAt": "2026-01-01T00:00:05Z",
        **extra,
    }
    return body["id"], body


def status(phase: str, *nodes: tuple[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "phase": phase,
        "startedAt": "2026-01-01T00:00:01Z",
        "nodes": dict(nodes),
        **extra,
    }


AUDIT = node(
    "audit",
    "audit",
    "Succeeded",
    finishedAt="2026-01-01T00:00:25Z",
    outputs={"parameters": [{"name": "critical_failures", "value": "0"}]},
)
PROVENANCE = node(
    "provenance",
    "provenance",
    "Succeeded",
    finishedAt="2026-01-01T00:00:45Z",
    outputs={"parameters": [{"name": "dataset_digest", "value": DIGEST}]},
)
EVALUATE_RUNNING = node("evaluate", "evaluate", "Running", progress="1/3")
EVALUATE_FAILED = node(
    "evaluate",
    "evaluate",
    "Failed",
    finishedAt="2026-01-01T00:02:00Z",
    message="exit code 1: AUC 0.61 < 0.75",
)


def workflow(name: str = RUN, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": "mlpipe",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app.kubernetes.io/name": "mlpipe", "mlpipe/model": "churn", **labels},
        },
        "spec": {"workflowTemplateRef": {"name": "mlpipe-training"}},
    }


@pytest.fixture
def server() -> Iterator[ArgoTestServer]:
    with ArgoTestServer(token=TOKEN) as running:
        yield running


# --- submit ------------------------------------------------------------------------------


def test_submit_sends_the_compiled_workflow_and_prints_its_name_and_ui_link(
    server: ArgoTestServer,
) -> None:
    result = mlpipe_here(
        "submit", "--param", "data-uri=s3://mlpipe-artifacts/incoming/b.parquet", server=server.url
    )
    assert result.exit_code == 0, result.stderr
    [body] = server.state.created
    sent = body["workflow"]
    name = sent["metadata"]["name"]
    assert result.stdout.split() == [name, f"{server.url}/workflows/mlpipe/{name}"]
    expected = build_workflow(load_config(CLUSTER)).to_dict()
    assert name.startswith(expected["metadata"]["generateName"])
    assert sent["metadata"]["labels"] == expected["metadata"]["labels"]
    assert sent["metadata"]["annotations"] == expected["metadata"]["annotations"]
    parameters = {p["name"]: p["value"] for p in sent["spec"]["arguments"]["parameters"]}
    compiled = {p["name"]: p["value"] for p in expected["spec"]["arguments"]["parameters"]}
    assert parameters == {**compiled, "data-uri": "s3://mlpipe-artifacts/incoming/b.parquet"}
    assert sent["spec"]["workflowTemplateRef"] == {"name": "mlpipe-training"}
    assert body["namespace"] == "mlpipe"


def test_submit_wait_follows_the_run_and_exits_with_its_result(server: ArgoTestServer) -> None:
    server.script_next(
        [
            status("Running", AUDIT),
            status("Running", AUDIT, PROVENANCE, EVALUATE_RUNNING, progress="2/3"),
            status("Failed", AUDIT, PROVENANCE, EVALUATE_FAILED, message="child failed"),
        ]
    )
    result = mlpipe_here("submit", "--wait", "--interval", "0.05", server=server.url)
    assert result.exit_code == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines.index("audit Succeeded") < lines.index("evaluate Running 1/3")
    assert "evaluate Failed: exit code 1: AUC 0.61 < 0.75" in lines
    assert "child failed" in result.stderr
    gets = [path for method, path, _ in server.state.requests if method == "GET"]
    assert len(gets) == 3, "one poll per scripted status, then it stops"


def test_submit_refuses_bad_parameters_before_calling_the_server(server: ArgoTestServer) -> None:
    unknown = one_line_error(mlpipe("submit", "--param", "epochs=3", server=server.url), 2)
    assert "'epochs': not a parameter of the workflow" in unknown
    assert server.state.requests == [], "nothing reached the server"
    config = load_config(CLUSTER)
    with pytest.raises(ConfigError, match="evaluate-spec: invalid EvaluateSpec: min_auc"):
        submission_manifest(config, ['evaluate-spec={"min_auc": 7}'])
    with pytest.raises(ConfigError, match=r"use --set train\.workers=8"):
        submission_manifest(config, ["workers=8"])
    with pytest.raises(ConfigError, match="expected name=value"):
        submission_manifest(config, ["workers"])
    local = load_config(CLUSTER, ["data.uri=data/sample.parquet"])
    with pytest.raises(ConfigError, match="is a local path"):
        submission_manifest(local)
    assert submission_manifest(load_config(CLUSTER, ["train.workers=8"]), ["workers=8"])


def test_submit_without_the_installed_template_says_to_install(server: ArgoTestServer) -> None:
    server.state.templates.clear()
    line = one_line_error(mlpipe("submit", server=server.url), 2)
    assert "mlpipe-training" in line and "mlpipe install" in line


# --- status, watch, logs, list -------------------------------------------------------------


def test_status_shows_every_step_with_phase_duration_progress_and_outputs(
    server: ArgoTestServer,
) -> None:
    server.add_workflow(
        workflow(), [status("Running", AUDIT, PROVENANCE, EVALUATE_RUNNING, progress="2/3")]
    )
    result = mlpipe_here("status", RUN, server=server.url)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert f"{RUN} Running 2/3" in text
    audit = next(line for line in text.splitlines() if "│ audit " in line)
    assert "Succeeded" in audit and "20.0s" in audit and "critical_failures=0" in audit
    evaluate = next(line for line in text.splitlines() if "│ evaluate " in line)
    assert "Running" in evaluate and "1/3" in evaluate
    assert f"{server.url}/workflows/mlpipe/{RUN}" in text


def test_watch_exits_zero_when_the_run_succeeds(server: ArgoTestServer) -> None:
    server.add_workflow(
        workflow(),
        [status("Running", AUDIT), status("Succeeded", AUDIT, PROVENANCE)],
    )
    result = mlpipe_here("watch", RUN, "--interval", "0.05", server=server.url)
    assert result.exit_code == 0, result.stderr
    assert "provenance Succeeded" in result.stdout.splitlines()


def test_logs_of_one_step_ask_the_server_for_that_pod_only(server: ArgoTestServer) -> None:
    audit_pod = pod_name(RUN, f"{RUN}.audit", "audit")
    evaluate_pod = pod_name(RUN, f"{RUN}.evaluate", "evaluate")
    server.add_workflow(
        workflow(),
        [status("Failed", AUDIT, EVALUATE_FAILED)],
        logs=[(audit_pod, "rows: 5000"), (evaluate_pod, "AUC 0.61 < 0.75")],
    )
    every = mlpipe_here("logs", RUN, server=server.url)
    assert every.exit_code == 0, every.stderr
    assert every.stdout.splitlines() == ["audit | rows: 5000", "evaluate | AUC 0.61 < 0.75"]
    one = mlpipe_here("logs", RUN, "--step", "evaluate", server=server.url)
    assert one.stdout.splitlines() == ["evaluate | AUC 0.61 < 0.75"]
    asked = [query for _, path, query in server.state.requests if path.endswith("/log")]
    assert asked[-1]["podName"] == [evaluate_pod]
    assert asked[-1]["logOptions.container"] == ["main"]
    missing = one_line_error(mlpipe("logs", RUN, "--step", "deploy", server=server.url), 2)
    assert "no step 'deploy'" in missing and "audit, evaluate" in missing


def test_list_shows_recent_runs_of_the_model_with_digest_and_trigger(
    server: ArgoTestServer,
) -> None:
    server.add_workflow(
        workflow(RUN, **{"mlpipe/trigger": "schedule"}),
        [status("Succeeded", AUDIT, PROVENANCE, finishedAt="2026-01-01T00:03:01Z")],
    )
    other = workflow("fraud-training-zzzzz")
    other["metadata"]["labels"]["mlpipe/model"] = "fraud"
    server.add_workflow(other, [status("Running")])
    result = mlpipe_here("list", server=server.url)
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if RUN in line)
    assert "Succeeded" in row and "churn" in row and DIGEST[:12] in row and "schedule" in row
    assert "3m00s" in row
    assert "fraud-training" not in result.stdout, "another model's runs are not listed"
    [query] = [q for _, path, q in server.state.requests if path == "/api/v1/workflows/mlpipe"]
    assert query["listOptions.labelSelector"] == [
        "app.kubernetes.io/name=mlpipe,mlpipe/model=churn"
    ]


# --- errors: one line, an exit code, no traceback --------------------------------------------


def test_a_rejected_token_is_one_line_naming_the_fix(server: ArgoTestServer) -> None:
    line = one_line_error(mlpipe("status", RUN, server=server.url, token="wrong"), 2)
    assert "rejected the credentials (HTTP 401" in line and "ARGO_TOKEN" in line
    assert "wrong" not in line, "the token is never echoed"
    missing = one_line_error(mlpipe("list", server=server.url, token=None), 2)
    assert "HTTP 401" in missing


def test_an_unknown_workflow_is_one_line(server: ArgoTestServer) -> None:
    line = one_line_error(mlpipe("watch", "nope-12345", server=server.url), 2)
    assert line == "error: no workflow 'nope-12345' in namespace mlpipe"
    logs = one_line_error(mlpipe("logs", "nope-12345", server=server.url), 2)
    assert "no workflow 'nope-12345'" in logs


def test_an_unreachable_server_is_one_line_and_exit_3() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    line = one_line_error(mlpipe("status", RUN, server=f"http://127.0.0.1:{port}"), 3)
    assert f"cannot reach the Argo server at http://127.0.0.1:{port}" in line
    assert "Connection refused" in line


def test_no_server_configured_is_a_config_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLPIPE_ARGO_SERVER"}
    result = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    line = one_line_error(result, 2)
    assert "no Argo server configured" in line


def test_a_silent_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = listener.getsockname()[1]
    config = load_config(
        CLUSTER, [f"argo.server=http://127.0.0.1:{port}", "argo.request_timeout_seconds=0.2"]
    )
    try:
        with ArgoClient(argo_settings(config, {})) as client, pytest.raises(ArgoError) as caught:
            client.get(RUN)
    finally:
        listener.close()
    assert caught.value.exit_code == 3
    assert "did not answer within 0.2 s" in str(caught.value)


# --- where the token comes from ------------------------------------------------------------


def test_the_token_comes_from_env_then_file_then_config(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    config = load_config(CLUSTER, [f"argo.token_file={token_file}", "argo.token=from-config"])
    assert argo_settings(config, {"ARGO_TOKEN": "from-env"}).token == "from-env"
    assert argo_settings(config, {}).token == "from-file"
    inline = load_config(CLUSTER, ["argo.token=from-config"])
    assert argo_settings(inline, {}).token == "from-config"
    assert "from-config" not in repr(inline.pipeline.argo), "the config never shows the token"
    missing = load_config(CLUSTER, [f"argo.token_file={tmp_path / 'absent'}"])
    with pytest.raises(ArgoError, match=r"cannot read .*absent"):
        argo_settings(missing, {})


# --- TLS: verified by default, a private CA by file ---------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA-less self-signed certificate for 127.0.0.1 and a server context using it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "argo-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "ca.pem"
    key_path = folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_and_a_private_ca_can_be_trusted(tmp_path: Path) -> None:
    ca, context = _self_signed(tmp_path)
    with ArgoTestServer(token=TOKEN, tls=context) as server:
        server.add_workflow(workflow(), [status("Succeeded", AUDIT)])
        untrusted = one_line_error(mlpipe("status", RUN, server=server.url), 3)
        assert "TLS verification of" in untrusted and "argo.ca_file" in untrusted
        environ = {"ARGO_TOKEN": TOKEN}
        trusted = load_config(CLUSTER, [f"argo.server={server.url}", f"argo.ca_file={ca}"])
        with ArgoClient(argo_settings(trusted, environ)) as client:
            assert client.get(RUN).phase == "Succeeded"
        unverified = load_config(CLUSTER, [f"argo.server={server.url}", "argo.verify_tls=false"])
        with ArgoClient(argo_settings(unverified, environ)) as client:
            assert client.get(RUN).phase == "Succeeded"
    missing = load_config(CLUSTER, ["argo.ca_file=/nonexistent.pem"])
    with pytest.raises(ArgoError, match=r"no such file: /nonexistent\.pem"):
        argo_settings(missing, {})


def test_a_broken_log_stream_is_an_error_not_silence(server: ArgoTestServer) -> None:
    """The server reports a failure inside the stream, as grpc-gateway does."""
    server.add_workflow(workflow(), [status("Running", AUDIT)], logs=[("p", "first")])
    server.state.log_error = "rpc error: pod deleted"
    config = load_config(CLUSTER, [f"argo.server={server.url}"])
    with ArgoClient(argo_settings(config, {"ARGO_TOKEN": TOKEN})) as client:
        lines = client.logs(RUN)
        assert next(lines).content == "first"
        with pytest.raises(ArgoError, match="rpc error: pod deleted") as caught:
            next(lines)
    assert caught.value.exit_code == 3
