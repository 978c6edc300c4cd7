"""Provenance statements without a bucket: DSSE signing, what a statement refuses, and the
signing settings reaching the templates."""

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steps.core.attestation import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    attest,
    envelope,
    key_id,
    open_envelope,
)
from steps.core.errors import BadInput
from steps.core.names import Env, Step
from tests.support.paths import LOCAL
from tests.support.signing import STARTED, pem


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


def test_signing_config_reaches_the_step_templates_and_the_local_secret(tmp_path: Path) -> None:
    from workflows.compiler import compile_manifests
    from workflows.config import ConfigError, load_config
    from workflows.local_run import signing_secrets

    key = tmp_path / "signing.pem"
    key.write_text(pem(Ed25519PrivateKey.generate()))
    config_file = LOCAL
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
    assert signed == {
        "audit",
        "provenance",
        "train-worker",
        "quantize",
        "evaluate",
        "model-card",
        "deploy",
    }
    assert signing_secrets(loaded) == {"mlpipe-signing": {"private-key": key.read_text()}}
    assert signing_secrets(load_config(config_file)) == {}
    with pytest.raises(ConfigError, match=r"provenance\.signing_key"):
        signing_secrets(load_config(config_file, ["provenance.signing=true"]))
