"""Provenance statements: in-toto v1 + SLSA v1 fields, DSSE signing, and the chain they form
in the bucket (found from a run or a digest, verified by re-downloading every artifact)."""

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steps.core.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    attest,
    envelope,
    key_id,
    open_envelope,
    run_pointer_key,
)
from steps.core.errors import BadInput, GateFailed
from steps.core.names import Artifact, Env, Step
from steps.core.store import ArtifactStore
from steps.provenance.chain import load_chain, render_chain, verify_chain

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def run_env(name: str, key: Ed25519PrivateKey | None = None) -> dict[str, str]:
    env = {
        Env.WORKFLOW_NAME.value: name,
        Env.WORKFLOW_UID.value: f"uid-{name}",
        Env.ARTIFACT_PREFIX.value: f"{name}/pod",
        Env.CODE_VERSION.value: "mlpipe-0-1-0-gabc",
        Env.CONFIG_DIGEST.value: "c" * 64,
        Env.ENGINE.value: "local",
    }
    if key is not None:
        env[Env.SIGNING_KEY.value] = pem(key)
    return env


def produce(
    store: ArtifactStore, tmp: Path, run: str, step: Step, content: bytes, consumed: list[Path],
    key: Ed25519PrivateKey | None = None,
) -> Path:  # fmt: skip
    """A step that writes `out/<step>.bin`, stored as the engine would (archive none)."""
    out = tmp / run / step.value
    out.mkdir(parents=True)
    produced = out / f"{step.value}.bin"
    produced.write_bytes(content)
    store.upload_file(produced, f"{run}/pod/{produced.name}")
    attest(
        step, out, store, STARTED, outputs=[produced], input_paths=consumed,
        parameters={"n": 1}, environ=run_env(run, key),
    )  # fmt: skip
    return produced


def test_statement_is_in_toto_v1_with_slsa_v1_and_run_details(
    store: ArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    produced = produce(store, tmp_path, "wf-1", Step.AUDIT, b"report", [source])
    signed = json.loads((produced.parent / Artifact.ATTESTATION.filename).read_text())
    assert signed["payloadType"] == PAYLOAD_TYPE
    assert signed["signatures"] == []
    statement = json.loads(base64.b64decode(signed["payload"]))
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == PREDICATE_TYPE
    [subject] = statement["subject"]
    assert subject["name"] == "audit.bin"
    assert subject["uri"] == store.uri("wf-1/pod/audit.bin")
    assert subject["digest"]["sha256"] == store.digest("wf-1/pod/audit.bin")
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"] == {"step": "audit", "parameters": {"n": 1}}
    assert build["internalParameters"]["config_digest"] == "c" * 64
    assert build["internalParameters"]["code_version"] == "mlpipe-0-1-0-gabc"
    [dependency] = build["resolvedDependencies"]
    assert dependency["name"] == "data.csv"
    details = statement["predicate"]["runDetails"]
    assert details["builder"]["id"] == "urn:mlpipe:engine:local"
    assert details["metadata"]["invocationId"] == "wf-1/uid-wf-1/audit"
    assert details["metadata"]["startedOn"] == "2026-01-02T03:04:05Z"
    assert details["byproducts"][0]["annotations"] == {
        "engine": "local", "name": "wf-1", "uid": "uid-wf-1",
    }  # fmt: skip
    pointer = store.get_json(run_pointer_key("wf-1", Step.AUDIT))
    assert store.exists(pointer["statement"])


def test_dsse_signature_covers_type_and_payload() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    value = {"_type": STATEMENT_TYPE, "predicateType": PREDICATE_TYPE, "subject": []}
    signed = envelope(value, key)
    assert signed["signatures"][0]["keyid"] == key_id(key.public_key())
    assert open_envelope(signed, key.public_key()) == value
    with pytest.raises(ValueError, match="not signed by key"):
        open_envelope(signed, other.public_key())
    forged = dict(signed, payload=base64.b64encode(b'{"_type": "x"}').decode())
    with pytest.raises(ValueError, match="does not verify"):
        open_envelope(forged, key.public_key())
    with pytest.raises(ValueError, match="not signed"):
        open_envelope(envelope(value, None), key.public_key())


def test_a_step_without_subjects_or_with_a_bad_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="at least one subject"):
        attest(Step.AUDIT, tmp_path, None, STARTED, environ={})
    (tmp_path / "x").write_text("x")
    env = {Env.SIGNING_KEY.value: "not a key"}
    with pytest.raises(BadInput, match="signing key"):
        attest(Step.AUDIT, tmp_path, None, STARTED, outputs=[tmp_path / "x"], environ=env)


def chain_of_three(store: ArtifactStore, tmp: Path, key: Ed25519PrivateKey | None = None) -> None:
    """data -> audit (run wf-1) -> train (run wf-1) -> deploy (run wf-2, reusing train)."""
    data = tmp / "data.csv"
    data.write_text("a,b\n1,2\n")
    audit = produce(store, tmp, "wf-1", Step.AUDIT, b"audited", [data], key)
    train = produce(store, tmp, "wf-1", Step.TRAIN, b"model", [audit], key)
    produce(store, tmp, "wf-2", Step.DEPLOY, b"deployed", [train], key)


def test_the_chain_of_a_run_follows_digests_into_earlier_runs(
    store: ArtifactStore, tmp_path: Path
) -> None:
    chain_of_three(store, tmp_path)
    chain = verify_chain(store, run="wf-2")
    assert [link.step for link in chain.links] == ["audit", "train", "deploy"]
    assert [link.workflow for link in chain.links] == ["wf-1", "wf-1", "wf-2"]
    assert [source.name for source in chain.sources] == ["data.csv"]
    assert chain.verified == 3
    text = render_chain(chain)
    assert text.index("1. audit") < text.index("2. train") < text.index("3. deploy")
    assert "unsigned" in text
    model = chain.links[1].subjects[0].digest
    assert [link.step for link in load_chain(store, digest=model).links] == ["audit", "train"]


def test_verify_names_a_tampered_artifact_and_a_tampered_statement(
    store: ArtifactStore, tmp_path: Path
) -> None:
    chain_of_three(store, tmp_path)
    store.put_bytes("wf-1/pod/train.bin", b"another model")
    with pytest.raises(GateFailed, match=r"train\.bin \(produced by train, s3://.*\) was changed"):
        verify_chain(store, run="wf-2")
    store.put_bytes("wf-1/pod/train.bin", b"model")
    verify_chain(store, run="wf-2")

    pointer = store.get_json(run_pointer_key("wf-2", Step.DEPLOY))
    statement = store.get_bytes(pointer["statement"])
    store.put_bytes(pointer["statement"], statement.replace(b'"payload"', b'"payload" '))
    with pytest.raises(GateFailed, match="no longer matches its address"):
        verify_chain(store, run="wf-2")


def test_with_a_public_key_every_statement_must_be_signed_by_it(
    store: ArtifactStore, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    chain_of_three(store, tmp_path, key)
    assert verify_chain(store, run="wf-2", public_key=key.public_key()).signed
    with pytest.raises(GateFailed, match="not signed by key"):
        verify_chain(store, run="wf-2", public_key=Ed25519PrivateKey.generate().public_key())


def test_cli_verify_exits_1_naming_the_artifact(
    store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path
) -> None:
    chain_of_three(store, tmp_path)

    def chain(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "steps", "chain", *args],
            env={**s3_env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    shown = chain("show", "--run", "wf-2")
    assert shown.returncode == 0, shown.stderr
    assert "3 statements" in shown.stdout
    assert chain("verify", "--run", "wf-2").returncode == 0
    store.put_bytes("wf-1/pod/audit.bin", b"edited")
    failed = chain("verify", "--run", "wf-2")
    assert failed.returncode == 1
    assert "audit.bin (produced by audit" in failed.stderr
    missing = chain("verify", "--run", "wf-404")
    assert missing.returncode == 2
    assert "no provenance recorded for run 'wf-404'" in missing.stderr


def test_signing_config_reaches_the_step_templates_and_the_local_secret(tmp_path: Path) -> None:
    from workflows.compiler import compile_manifests
    from workflows.config import ConfigError, load_config
    from workflows.local_run import signing_secrets

    key = tmp_path / "signing.pem"
    key.write_text(pem(Ed25519PrivateKey.generate()))
    config_file = Path(__file__).parents[1] / "config" / "local.yaml"
    on = ["provenance.signing=true", f"provenance.signing_key={key}"]
    loaded = load_config(config_file, on)
    templates = compile_manifests(loaded).template["spec"]["templates"]
    signed = {
        t["name"]
        for t in templates
        for env in t.get("container", {}).get("env", [])
        if env["name"] == Env.SIGNING_KEY.value
        and env["valueFrom"]["secretKeyRef"] == {"name": "mlpipe-signing", "key": "private-key"}
    }
    assert signed == {"audit", "provenance", "train-worker", "quantize", "evaluate", "deploy"}
    assert signing_secrets(loaded) == {"mlpipe-signing": {"private-key": key.read_text()}}
    assert signing_secrets(load_config(config_file)) == {}
    with pytest.raises(ConfigError, match=r"provenance\.signing_key"):
        signing_secrets(load_config(config_file, ["provenance.signing=true"]))
