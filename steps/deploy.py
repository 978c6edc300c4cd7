"""deploy: put the evaluated ONNX model behind the model server and record it in the registry.

The chain of custody ends here: the ONNX file must hash to the digest evaluate vouched for,
or nothing is deployed. The local backend then starts the real server (`python -m serving`)
on loopback, scores test rows over HTTP and compares them with onnxruntime run in-process,
so what the registry records is a model that was seen answering correctly. The registry's
`stable.json` pointer is written last: until it moves, the previous model stays current.
"""

import argparse
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import orjson
from numpy.typing import NDArray

from steps.attestation import attest
from steps.dataset import Split, load_split
from steps.errors import BadInput, GateFailed
from steps.features import FeatureSchema, encode, load_schema
from steps.names import Artifact, Env, ModelFile, Param, Step
from steps.outputs import report_progress, write_parameter
from steps.quantize import open_session, predict_proba
from steps.specs import DeploySpec
from steps.store import ArtifactStore

REGISTRY_PREFIX = "registry"
RECORD_FILE = "record.json"
STABLE_FILE = "stable.json"

SMOKE_TOLERANCE = 1e-6
"""Max |served - local| probability: the server runs the same graph on the same float32
rows, and FP32 values survive the JSON round trip exactly, so any real drift is a bug."""

# The name is part of URLs and S3 keys: keep it to characters that need no escaping there.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
STOP_TIMEOUT_SECONDS = 10.0
STDERR_TAIL_LINES = 20
PHASES = 3  # verify, smoke test, register


@dataclass(frozen=True)
class Rollout:
    """What was deployed where; written as rollout.json for the workflow and its UI."""

    model_name: str
    digest: str
    backend: str
    endpoint: str
    smoke_rows: int
    max_abs_diff: float
    version_key: str
    stable_key: str
    deployed_at: str


def version_key(model_name: str, digest: str) -> str:
    """Registry folder of one deployed model version (content-addressed by ONNX digest)."""
    return f"{REGISTRY_PREFIX}/{model_name}/versions/{digest}"


def stable_key(model_name: str) -> str:
    """The pointer to the version serving now; evaluate compares against it."""
    return f"{REGISTRY_PREFIX}/{model_name}/{STABLE_FILE}"


def deploy(
    store: ArtifactStore,
    onnx: Path,
    onnx_digest: str,
    model_dir: Path,
    dataset_uri: str,
    model_name: str,
    spec: DeploySpec,
    progress_file: Path | None = None,
) -> Rollout:
    """Verify, smoke-test on a local server, then register; the first failure stops it all."""
    if not MODEL_NAME.fullmatch(model_name):
        raise BadInput(
            f"model name {model_name!r} must be 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it is part of URLs and registry keys)"
        )
    verify_digest(onnx, onnx_digest)
    schema_path = model_dir / ModelFile.FEATURE_SCHEMA
    schema = load_schema(schema_path)
    booster = model_dir / ModelFile.BOOSTER
    if not booster.is_file():
        raise BadInput(f"model bundle {model_dir} has no {ModelFile.BOOSTER.value}")
    report_progress(progress_file, 1, PHASES)

    rows = smoke_rows(store, dataset_uri, schema, spec.smoke_rows)
    smoke = smoke_test_local(onnx, onnx_digest, schema_path, schema, model_name, rows, spec)
    report_progress(progress_file, 2, PHASES)

    rollout = Rollout(
        model_name=model_name,
        digest=onnx_digest,
        backend="local",
        endpoint=smoke.endpoint,
        smoke_rows=len(rows),
        max_abs_diff=smoke.max_abs_diff,
        version_key=version_key(model_name, onnx_digest),
        stable_key=stable_key(model_name),
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    register(store, rollout, onnx, schema_path, booster, dataset_uri)
    report_progress(progress_file, 3, PHASES)
    return rollout


def verify_digest(onnx: Path, expected: str) -> None:
    """The provenance gate: deploy exactly the artifact evaluate passed, or nothing."""
    actual = file_sha256(onnx)
    if actual != expected:
        raise GateFailed(
            f"ONNX model {onnx} has sha256 {actual}, but the evaluated model is {expected}: "
            "refusing to deploy an artifact that was not evaluated"
        )


def file_sha256(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from None


def smoke_rows(
    store: ArtifactStore, dataset_uri: str, schema: FeatureSchema, count: int
) -> NDArray[np.float32]:
    """The first `count` test rows, encoded exactly as the model saw data in training."""
    test = load_split(store, dataset_uri, Split.TEST)
    if test.empty:
        raise BadInput(f"dataset {dataset_uri}: the test split has no rows to smoke-test with")
    return encode(test.head(count), schema)


@dataclass(frozen=True)
class SmokeResult:
    endpoint: str
    max_abs_diff: float


def smoke_test_local(
    onnx: Path,
    digest: str,
    schema_path: Path,
    schema: FeatureSchema,
    model_name: str,
    rows: NDArray[np.float32],
    spec: DeploySpec,
) -> SmokeResult:
    """The local backend: serve the model on loopback, score `rows` over HTTP, stop it,
    and hold the answers against onnxruntime in this process."""
    with local_server(onnx, schema_path, model_name, digest, spec) as base_url:
        served = served_probabilities(base_url, model_name, digest, schema, rows)
    # Scored here only after the server ran: it checks the model against the schema first
    # and explains a misfit better than onnxruntime's shape error would.
    errors = np.abs(served - predict_proba(open_session(onnx), rows))
    worst = int(np.argmax(errors))
    if errors[worst] > SMOKE_TOLERANCE:
        raise GateFailed(
            f"smoke test: served probabilities differ from onnxruntime by up to "
            f"{errors[worst]:.3g} (test row {worst}: served {served[worst]}); "
            f"tolerance {SMOKE_TOLERANCE}"
        )
    return SmokeResult(
        endpoint=f"{base_url}/v2/models/{model_name}", max_abs_diff=float(errors[worst])
    )


@contextmanager
def local_server(
    onnx: Path, schema_path: Path, model_name: str, digest: str, spec: DeploySpec
) -> Iterator[str]:
    """Run `python -m serving` until the block ends; yields its base URL once ready."""
    port = spec.port or free_port(spec.host)
    command = [
        sys.executable,
        "-m",
        "serving",
        "--model",
        str(onnx),
        "--schema",
        str(schema_path),
        "--name",
        model_name,
        "--digest",
        digest,
        "--host",
        spec.host,
        "--port",
        str(port),
    ]
    base_url = f"http://{spec.host}:{port}"
    # stderr goes to a file, not a pipe: nobody reads a pipe while the server runs, and a
    # full pipe would block the server mid-request.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_until_ready(process, base_url, spec.startup_timeout_seconds, stderr)
            yield base_url
        except httpx.HTTPError as error:
            raise GateFailed(
                f"smoke test: model server at {base_url} failed: {error}: {tail(stderr)}"
            ) from None
        finally:
            stop(process)


def free_port(host: str) -> int:
    """A port the OS says is free now (it could be taken before the server binds it: then
    the server fails to start and its stderr says so)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, timeout: float, stderr: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    # trust_env=False here and below: a proxy from the environment must not sit between
    # this process and a server on loopback.
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            code = process.poll()
            if code is not None:
                raise GateFailed(
                    f"model server exited with code {code} before it was ready at {base_url}: "
                    f"{tail(stderr)}"
                )
            try:
                if client.get(f"{base_url}/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise GateFailed(
                    f"model server at {base_url} not ready after {timeout:g} s: {tail(stderr)}"
                )
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets uvicorn finish in-flight requests; SIGKILL only if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    lines = stream.read().decode(errors="replace").strip().splitlines()
    return " | ".join(lines[-STDERR_TAIL_LINES:]) or "(no output on stderr)"


def served_probabilities(
    base_url: str,
    model_name: str,
    digest: str,
    schema: FeatureSchema,
    rows: NDArray[np.float32],
) -> NDArray[np.float64]:
    """Score `rows` through the Open Inference Protocol, checking what the server claims."""
    model_url = f"{base_url}/v2/models/{model_name}"
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        metadata = _ok_json(client.get(model_url), "model metadata")
        (tensor,) = metadata["inputs"]
        served_features = tensor.get("parameters", {}).get("features")
        if served_features != schema.names:
            raise GateFailed(
                f"smoke test: server lists features {served_features}, schema has {schema.names}"
            )
        request = {
            "inputs": [
                {
                    "name": tensor["name"],
                    "datatype": "FP32",
                    "shape": list(rows.shape),
                    "data": rows,  # NaN (missing) is encoded as null, as the protocol needs
                }
            ]
        }
        response = client.post(
            f"{model_url}/infer",
            content=orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY),
            headers={"content-type": "application/json"},
        )
    body = _ok_json(response, "inference")
    if body.get("model_version") != digest:
        raise GateFailed(
            f"smoke test: server answered as version {body.get('model_version')}, not {digest}"
        )
    (output,) = body["outputs"]
    served = np.asarray(output["data"], dtype=np.float64)
    if output["name"] != "probability" or served.shape != (len(rows),):
        raise GateFailed(
            f"smoke test: expected output 'probability' of {len(rows)} values, "
            f"got {output['name']!r} with shape {list(served.shape)}"
        )
    return served


def _ok_json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise GateFailed(
            f"smoke test: {what} {response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body


def register(
    store: ArtifactStore,
    rollout: Rollout,
    onnx: Path,
    schema_path: Path,
    booster: Path,
    dataset_uri: str,
) -> None:
    """Write the version folder, then move `stable.json` to it (last, so readers never see
    a pointer to a half-written version)."""
    folder = rollout.version_key
    uploaded = store.upload_file(onnx, f"{folder}/{Artifact.ONNX.filename}")
    if uploaded != rollout.digest:
        raise GateFailed(
            f"ONNX model {onnx} changed during deploy: uploaded sha256 {uploaded}, "
            f"smoke-tested {rollout.digest}; stable.json not moved"
        )
    store.upload_file(schema_path, f"{folder}/{ModelFile.FEATURE_SCHEMA.value}")
    model_digest = file_sha256(booster)
    store.put_json(
        f"{folder}/{RECORD_FILE}",
        {
            "model_name": rollout.model_name,
            "digest": rollout.digest,
            "model_digest": model_digest,
            "dataset_uri": dataset_uri,
            "deployed_at": rollout.deployed_at,
            "smoke": {"rows": rollout.smoke_rows, "max_abs_diff": rollout.max_abs_diff},
        },
    )
    store.put_json(
        rollout.stable_key,
        {
            "model_name": rollout.model_name,
            "digest": rollout.digest,
            "version_key": folder,
            "deployed_at": rollout.deployed_at,
        },
    )


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps deploy", description=__doc__)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--onnx-digest", required=True, help="sha256 evaluate vouched for")
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--dataset-uri", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--deploy-spec", required=True, help="DeploySpec JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    spec = DeploySpec.from_json_arg(args.deploy_spec)
    progress = os.environ.get(Env.PROGRESS_FILE.value)
    store = ArtifactStore.from_env(os.environ)
    rollout = deploy(
        store=store,
        onnx=args.onnx,
        onnx_digest=args.onnx_digest,
        model_dir=args.model,
        dataset_uri=args.dataset_uri,
        model_name=args.model_name,
        spec=spec,
        progress_file=Path(progress) if progress else None,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / Artifact.ROLLOUT.filename).write_text(
        orjson.dumps(asdict(rollout), option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    write_parameter(args.out, Param.DEPLOYED_DIGEST, rollout.digest)
    write_parameter(args.out, Param.ENDPOINT, rollout.endpoint)
    # Only immutable registry files are subjects: stable.json moves with the next deploy and
    # record.json is rewritten when the same model is deployed again.
    version = rollout.version_key
    attest(
        Step.DEPLOY, args.out, store, started,
        outputs=[args.out / Artifact.ROLLOUT.filename],
        output_keys=[f"{version}/{Artifact.ONNX.filename}",
                     f"{version}/{ModelFile.FEATURE_SCHEMA.value}"],
        input_paths=[args.onnx, args.model], datasets=[args.dataset_uri],
        parameters={"model_name": args.model_name, "deploy_spec": spec.model_dump(mode="json")},
    )  # fmt: skip
    return 0
