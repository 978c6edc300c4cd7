"""Each step's provenance record: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

Subjects are what the step produced, `resolvedDependencies` what it consumed, each with the
SHA-256 of its bytes, so the statements of one run link up by digest into a chain from the
user's file to the deployed model (steps/provenance/chain.py walks and verifies it). The
statement is wrapped in a DSSE envelope, signed with Ed25519 when a key is configured.

Where statements live (one layout for both engines, all keys in the artifact bucket):
- `<out>/attestation.intoto.json`: the envelope as the step's `attestation` output artifact,
  stored run-scoped by the engine like any artifact (what the Argo UI shows);
- `provenance/statements/<sha256 of the envelope>.json`: the envelope, content-addressed, so
  a statement cannot change without changing its address;
- `provenance/subjects/<subject sha256>/<statement sha256>.json`: a pointer per subject and
  statement, so every producer of an artifact is found from its digest, whichever run
  produced it (a memoized step's outputs are attested by the run that computed them);
- `runs/<workflow name>/provenance/<step>.json`: a pointer per step that ran in a workflow.
"""

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from steps.core.errors import BadInput
from steps.core.names import Artifact, Env, Step
from steps.core.store import ArtifactStore, parse_s3_uri

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:mlpipe:step:v1"
"""What `externalParameters` mean: the step name and its CLI parameters."""
HASH = "sha256"

STATEMENTS_PREFIX = "provenance/statements"
SUBJECTS_PREFIX = "provenance/subjects"
RUNS_PREFIX = "runs"


@dataclass(frozen=True)
class Resource:
    """An in-toto ResourceDescriptor: a name, the SHA-256 of the bytes, where it is stored."""

    name: str
    digest: str
    uri: str | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"name": self.name, "digest": {HASH: self.digest}}
        if self.uri is not None:
            value["uri"] = self.uri
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Resource":
        return cls(str(value["name"]), str(value["digest"][HASH]), value.get("uri"))


@dataclass(frozen=True)
class RunDetails:
    """Who ran the step: read from the environment the workflow template sets."""

    engine: str
    workflow_name: str | None
    workflow_uid: str | None
    artifact_prefix: str | None
    code_version: str | None
    config_digest: str | None
    image_digest: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "RunDetails":
        name = environ.get(Env.WORKFLOW_NAME.value) or None
        # The local engine says so; a workflow pod without the marker runs on Argo.
        engine = environ.get(Env.ENGINE.value) or ("argo" if name else "standalone")
        return cls(
            engine=engine,
            workflow_name=name,
            workflow_uid=environ.get(Env.WORKFLOW_UID.value) or None,
            artifact_prefix=environ.get(Env.ARTIFACT_PREFIX.value) or None,
            code_version=environ.get(Env.CODE_VERSION.value) or None,
            config_digest=environ.get(Env.CONFIG_DIGEST.value) or None,
            image_digest=environ.get(Env.IMAGE_DIGEST.value) or None,
        )


def statement(
    step: Step,
    subjects: Sequence[Resource],
    dependencies: Sequence[Resource],
    parameters: Mapping[str, object],
    run: RunDetails,
    started: datetime,
    finished: datetime,
) -> dict[str, Any]:
    """The in-toto Statement v1 (SLSA Provenance v1 predicate) of one step execution."""
    if not subjects:
        raise BadInput(f"a {step} statement needs at least one subject")
    invocation = "/".join(
        part for part in (run.workflow_name, run.workflow_uid, step.value) if part is not None
    )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [s.to_json() for s in subjects],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"step": step.value, "parameters": dict(parameters)},
                "internalParameters": {
                    "config_digest": run.config_digest,
                    "code_version": run.code_version,
                    "package_version": _package_version(),
                    "image_digest": run.image_digest,
                    "hash": HASH,
                },
                "resolvedDependencies": [d.to_json() for d in dependencies],
            },
            "runDetails": {
                "builder": {"id": f"urn:mlpipe:engine:{run.engine}"},
                "metadata": {
                    "invocationId": invocation,
                    "startedOn": _timestamp(started),
                    "finishedOn": _timestamp(finished),
                },
                "byproducts": [
                    {
                        "name": "workflow",
                        "annotations": {
                            "engine": run.engine,
                            "name": run.workflow_name,
                            "uid": run.workflow_uid,
                        },
                    }
                ],
            },
        },
    }


# --- DSSE ----------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is signed, so the type cannot be swapped."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def envelope(value: Mapping[str, Any], key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """A DSSE envelope of the statement; `signatures` is empty when no key is configured."""
    payload = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    signatures = []
    if key is not None:
        signature = key.sign(pae(PAYLOAD_TYPE, payload))
        signatures.append(
            {"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}
        )
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": signatures,
    }


def open_envelope(value: Mapping[str, Any], public_key: Ed25519PublicKey | None) -> dict[str, Any]:
    """The statement inside an envelope; with a key, a valid signature by it is required.

    Raises ValueError saying what is wrong (not a DSSE in-toto envelope, no or bad signature).
    """
    if value.get("payloadType") != PAYLOAD_TYPE or not isinstance(value.get("payload"), str):
        raise ValueError(f"not a DSSE envelope of type {PAYLOAD_TYPE}")
    payload = base64.b64decode(value["payload"], validate=True)
    if public_key is not None:
        wanted = key_id(public_key)
        signatures = [s for s in value.get("signatures", []) if s.get("keyid") == wanted]
        if not signatures:
            raise ValueError(f"not signed by key {wanted[:16]}")
        try:
            public_key.verify(base64.b64decode(signatures[0]["sig"]), pae(PAYLOAD_TYPE, payload))
        except (InvalidSignature, ValueError) as error:
            raise ValueError(f"signature by key {wanted[:16]} does not verify") from error
    decoded: dict[str, Any] = json.loads(payload)
    if decoded.get("_type") != STATEMENT_TYPE or decoded.get("predicateType") != PREDICATE_TYPE:
        raise ValueError("payload is not an in-toto v1 statement with a SLSA v1 predicate")
    return decoded


def load_private_key(pem: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise BadInput(f"signing key: not an unencrypted PEM private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"signing key: expected Ed25519, got {type(key).__name__}")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A public key PEM, or the public half of a private key PEM (the signing key file)."""
    if b"PRIVATE KEY" in pem:
        return load_private_key(pem.decode()).public_key()
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise BadInput(f"public key: not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"public key: expected Ed25519, got {type(key).__name__}")
    return key


# --- describing inputs and outputs ---------------------------------------------------------


def file_digest(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, HASH).hexdigest()


def local_resources(
    paths: Sequence[Path], base: Path | None = None, uri_prefix: str | None = None
) -> list[Resource]:
    """Files (folders expanded), named relative to `base`; with `uri_prefix`, each gets the
    URI it is stored at (`<prefix>/<name>`, how an unarchived artifact is keyed)."""
    resources = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        root = base if base is not None else path.parent
        for file in files:
            name = file.relative_to(root).as_posix()
            uri = f"{uri_prefix.rstrip('/')}/{name}" if uri_prefix else None
            resources.append(Resource(name, file_digest(file), uri))
    return resources


def stored_resources(store: ArtifactStore, keys: Sequence[str]) -> list[Resource]:
    """Objects in the bucket (prefixes ending in `/` expanded), by their recorded SHA-256."""
    resources = []
    for key in keys:
        expanded = store.list(key) if key.endswith("/") else [key]
        resources += [Resource(k, store.digest(k), store.uri(k)) for k in expanded]
    return resources


def data_resource(store: ArtifactStore | None, uri: str) -> Resource:
    """The user's data file, local or in the bucket."""
    if uri.startswith("s3://") and store is not None:
        bucket, key = parse_s3_uri(uri)
        if bucket == store.bucket:
            return Resource(key, store.digest(key), uri)
    path = Path(uri)
    return Resource(path.name, file_digest(path), path.resolve().as_uri())


# --- the one call at a step's CLI edge -----------------------------------------------------


def attest(
    step: Step,
    out: Path,
    store: ArtifactStore | None,
    started: datetime,
    *,
    outputs: Sequence[Path] = (),
    output_keys: Sequence[str] = (),
    inputs: Sequence[Resource] = (),
    input_paths: Sequence[Path] = (),
    input_keys: Sequence[str] = (),
    datasets: Sequence[str] = (),
    parameters: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write the step's signed statement to `<out>` and, with a store, to the bucket.

    `outputs` are files or folders under `out` that the workflow stores as artifacts;
    `output_keys` objects the step wrote to the bucket itself. `inputs`, `input_paths` (files
    or folders, e.g. an input artifact), `input_keys` and `datasets` (URIs of canonical
    datasets, every file of which counts) are what it read. Returns the envelope.
    """
    environ = os.environ if environ is None else environ
    run = RunDetails.from_env(environ)
    prefix = None
    if store is not None and run.artifact_prefix:
        prefix = store.uri(run.artifact_prefix.strip("/"))
    subjects = local_resources(outputs, out, prefix)
    dependencies = list(inputs) + local_resources(input_paths)
    if store is not None:
        subjects += stored_resources(store, output_keys)
        dataset_keys = [parse_s3_uri(uri)[1].rstrip("/") + "/" for uri in datasets]
        dependencies += stored_resources(store, [*input_keys, *dataset_keys])
    elif output_keys or input_keys or datasets:
        raise BadInput(f"{step}: stored inputs or outputs need the artifact store")
    value = statement(
        step, subjects, dependencies, parameters or {}, run, started, datetime.now(UTC)
    )
    pem = environ.get(Env.SIGNING_KEY.value)
    signed = envelope(value, load_private_key(pem) if pem else None)
    text = json.dumps(signed, indent=2, sort_keys=True) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / Artifact.ATTESTATION.filename).write_text(text)
    if store is not None:
        publish(store, step, signed, [s.digest for s in subjects], run.workflow_name)
    return signed


def publish(
    store: ArtifactStore,
    step: Step,
    signed: Mapping[str, Any],
    subject_digests: Sequence[str],
    workflow_name: str | None,
) -> str:
    """Store the envelope content-addressed, then the pointers that find it; returns its key.

    The envelope goes first: a pointer never names a statement that is not there yet.
    """
    data = (json.dumps(signed, indent=2, sort_keys=True) + "\n").encode()
    address = hashlib.sha256(data).hexdigest()
    key = f"{STATEMENTS_PREFIX}/{address}.json"
    store.put_bytes(key, data)
    pointer = {"statement": key, "step": step.value, "workflow": workflow_name}
    for digest in dict.fromkeys(subject_digests):
        store.put_json(f"{SUBJECTS_PREFIX}/{digest}/{address}.json", pointer)
    if workflow_name:
        store.put_json(run_pointer_key(workflow_name, step), pointer)
    return key


def run_pointer_key(workflow_name: str, step: Step | str) -> str:
    return f"{RUNS_PREFIX}/{workflow_name}/provenance/{Step(step).value}.json"


def _package_version() -> str | None:
    try:
        return metadata.version("mlpipe")
    except metadata.PackageNotFoundError:
        return None


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
