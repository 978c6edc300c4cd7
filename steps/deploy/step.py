"""deploy: roll the evaluated ONNX model out behind the model server, as a canary when a stable
model serves already, and move the registry only after it proved itself.

The chain of custody ends here. The provenance gate comes first: the ONNX file must hash to
the digest evaluate vouched for, and the provenance chain that produced that digest must
verify, or nothing is deployed. A promotion a previous deploy left half done is repaired
next, and the stable model is read verified (steps/core/model_registry.py). A smoke test then
serves the model on loopback and holds its answers over HTTP against onnxruntime in this
process. The promotion itself is a transaction (steps/deploy/promotion.py): an intent record,
the canary progression (steps/deploy/canary.py; skipped for the first model), the switch of
the stable track, then `stable.json`, on a backend (steps/deploy/local.py here, or
steps/deploy/kube.py); any failure puts traffic back on the version `stable.json` names.
"""

import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import ValidationError

from steps.core.errors import BadInput, GateFailed
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.model_registry import (
    RECORD_FILE,
    check_model_name,
    read_verified,
    stable_key,
    version_key,
)
from steps.core.names import Artifact, Env, ModelFile, Param
from steps.core.outputs import report_progress
from steps.core.registry import DATASET_URI, MODEL_NAME, ONNX_DIGEST
from steps.core.specs import DeploySpec
from steps.core.store import ArtifactStore, file_sha256
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import FeatureSchema, encode, load_schema
from steps.deploy.backend import CanaryBackend, ModelVersion, backend_for
from steps.deploy.canary import StepResult, run_canary
from steps.deploy.local import free_port, local_server, ok_json, serve_command
from steps.deploy.promotion import Phase, PhaseHook, new_intent, promotion, repair_leftover
from steps.deploy.report import rollout_html
from steps.evaluate.expectation import ScoreExpectation
from steps.provenance.chain import Chain, verify_chain
from steps.quantize.session import open_session, predict_proba

SMOKE_TOLERANCE = 1e-6
"""Max |served - local| probability: the server runs the same graph on the same float32
rows, and FP32 values survive the JSON round trip exactly, so any real drift is a bug."""

PHASES = 3  # verify, smoke test, promote; the canary adds one per step


@dataclass(frozen=True)
class Rollout:
    """What was deployed where and how; written as rollout.json for the workflow and its UI."""

    model_name: str
    digest: str
    backend: str
    endpoint: str
    smoke_rows: int
    max_abs_diff: float
    version_key: str
    stable_key: str
    deployed_at: str
    previous_digest: str | None = None
    """The stable version the canary was compared with; None on a first deploy."""
    canary: list[dict[str, Any]] = field(default_factory=list)
    """One entry per progression step (steps/deploy/canary.py StepResult); empty without a
    canary."""
    provenance: list[dict[str, str]] = field(default_factory=list)
    """The verified chain behind the digest: each statement's step and key, producers first."""


def deploy(
    store: ArtifactStore,
    onnx: Path,
    onnx_digest: str,
    model_dir: Path,
    dataset_uri: str,
    model_name: str,
    spec: DeploySpec,
    progress_file: Path | None = None,
    backend: CanaryBackend | None = None,
    on_phase: PhaseHook | None = None,
    workflow: str | None = None,
    expected: ScoreExpectation | None = None,
) -> Rollout:
    """Gate, smoke-test, then promote as a transaction (steps/deploy/promotion.py): canary
    (when a stable model exists), switch, commit; the first failure stops it all and rolls
    traffic back to what stable.json names. `backend` defaults to the one the spec
    configures; `on_phase` is called at each boundary of the promotion; `expected` is what
    evaluate measured of the candidate and the champion (needed for a canary)."""
    check_model_name(model_name)
    verify_digest(onnx, onnx_digest)
    chain = verify_chain(store, digest=onnx_digest)
    schema_path = model_dir / ModelFile.FEATURE_SCHEMA
    schema = load_schema(schema_path)
    booster = model_dir / ModelFile.BOOSTER
    if not booster.is_file():
        raise BadInput(f"model bundle {model_dir} has no {ModelFile.BOOSTER.value}")
    test = load_split(store, dataset_uri, Split.TEST)
    if test.empty:
        raise BadInput(f"dataset {dataset_uri}: the test split has no rows to smoke-test with")
    labels = test[read_manifest(store, dataset_uri).label].to_numpy(np.int8)
    backend = backend or backend_for(spec, store, model_name, test, labels)
    repair_leftover(store, backend, model_name)
    with tempfile.TemporaryDirectory(prefix="mlpipe-deploy-") as tmp:
        stable = read_verified(store, model_name, Path(tmp))
    previous = stable.version.digest if stable is not None else None
    with_canary = previous is not None and previous != onnx_digest
    if with_canary:
        expected = expectation_for(expected, previous)
    total = PHASES + (len(spec.canary.steps) if with_canary else 0)
    report_progress(progress_file, 1, total)

    rows = encode(test.head(spec.smoke_rows), schema)
    max_abs_diff = smoke_test_local(onnx, onnx_digest, schema_path, schema, model_name, rows, spec)
    report_progress(progress_file, 2, total)

    version = stage(store, model_name, onnx, onnx_digest, schema_path)
    intent = new_intent(model_name, previous, onnx_digest, backend.kind, workflow)
    with promotion(store, backend, intent, on_phase) as transaction:
        steps: list[StepResult] = []
        if with_canary:
            assert expected is not None
            steps = run_canary(
                backend, version, spec.canary, expected, progress_file, done=2, total=total
            )
            transaction.reached(Phase.CANARY_PASSED)
        rollout = Rollout(
            model_name=model_name,
            digest=onnx_digest,
            backend=backend.kind,
            endpoint="",
            smoke_rows=len(rows),
            max_abs_diff=max_abs_diff,
            version_key=version_key(model_name, onnx_digest),
            stable_key=stable_key(model_name),
            deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            previous_digest=previous,
            canary=[asdict(step) for step in steps],
            provenance=provenance_of(chain),
        )
        write_record(store, rollout, booster, dataset_uri)
        base_url = transaction.switch(version)
        transaction.commit(rollout.deployed_at)
    report_progress(progress_file, total, total)
    return replace(rollout, endpoint=f"{base_url}/v2/models/{model_name}")


def verify_digest(onnx: Path, expected: str) -> None:
    """Deploy exactly the artifact evaluate passed, or nothing."""
    actual = file_sha256(onnx)
    if actual != expected:
        raise GateFailed(
            f"ONNX model {onnx} has sha256 {actual}, but the evaluated model is {expected}: "
            "refusing to deploy an artifact that was not evaluated"
        )


def evaluated_digest(evaluation: Path, onnx_digest: str) -> str:
    """The ONNX digest evaluate recorded in evaluation.json; it must be the one given."""
    try:
        evaluated = str(orjson.loads(evaluation.read_bytes())["onnx_digest"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise BadInput(f"cannot read onnx_digest from {evaluation}: {error}") from None
    if evaluated != onnx_digest:
        raise GateFailed(
            f"evaluate passed the ONNX model with sha256 {evaluated}, but deploy was given "
            f"{onnx_digest}: refusing to deploy an artifact that was not evaluated"
        )
    return evaluated


def expectation_for(expected: ScoreExpectation | None, stable: str | None) -> ScoreExpectation:
    """The canary judges the candidate against the champion evaluate compared it with."""
    if expected is None:
        raise BadInput(
            "a canary needs what evaluate measured of both models (evaluation.json "
            "`expected_scores`): evaluate the model again with this version"
        )
    if expected.champion_digest != stable:
        raise GateFailed(
            f"evaluate compared the candidate with {expected.champion_digest or 'no champion'}, "
            f"but stable is now {stable}: evaluate it again against the model serving now"
        )
    return expected


def evaluated_scores(evaluation: Path) -> ScoreExpectation | None:
    """The score expectation evaluate recorded in evaluation.json (None: not recorded)."""
    try:
        recorded = orjson.loads(evaluation.read_bytes()).get("expected_scores")
        return None if recorded is None else ScoreExpectation.model_validate(recorded)
    except (OSError, orjson.JSONDecodeError, AttributeError, ValidationError) as error:
        raise BadInput(f"cannot read expected_scores from {evaluation}: {error}") from None


def provenance_of(chain: Chain) -> list[dict[str, str]]:
    return [{"step": link.step, "statement": link.key} for link in chain.links]


def smoke_test_local(
    onnx: Path,
    digest: str,
    schema_path: Path,
    schema: FeatureSchema,
    model_name: str,
    rows: NDArray[np.float32],
    spec: DeploySpec,
) -> float:
    """Serve the model on loopback, score `rows` over HTTP, stop it, and hold the answers
    against onnxruntime in this process; returns the largest difference."""
    port = free_port(spec.host)
    command = serve_command(onnx, schema_path, model_name, digest, spec.host, port)
    base_url = f"http://{spec.host}:{port}"
    try:
        with local_server(command, base_url, spec.startup_timeout_seconds):
            served = served_probabilities(base_url, model_name, digest, schema, rows)
    except GateFailed as error:
        raise GateFailed(f"smoke test: {error}") from None
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
    return float(errors[worst])


def served_probabilities(
    base_url: str,
    model_name: str,
    digest: str,
    schema: FeatureSchema,
    rows: NDArray[np.float32],
) -> NDArray[np.float64]:
    """Score `rows` through the Open Inference Protocol, checking what the server claims."""
    model_url = f"{base_url}/v2/models/{model_name}"
    # trust_env=False: a proxy from the environment must not sit in front of loopback.
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        metadata = ok_json(client.get(model_url), "model metadata")
        # The server lists the [N, F] matrix and one tensor per feature; the rows here are
        # model-ready, so they go as the matrix.
        matrices = [
            tensor
            for tensor in metadata.get("inputs", [])
            if tensor.get("parameters", {}).get("form") == "matrix"
        ]
        if len(matrices) != 1:
            names = [tensor.get("name") for tensor in metadata.get("inputs", [])]
            raise GateFailed(f"server lists no single [N, F] matrix input among inputs {names}")
        (tensor,) = matrices
        served_features = tensor["parameters"].get("features")
        if served_features != schema.names:
            raise GateFailed(f"server lists features {served_features}, schema has {schema.names}")
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
    body = ok_json(response, "inference")
    if body.get("model_version") != digest:
        raise GateFailed(f"server answered as version {body.get('model_version')}, not {digest}")
    (output,) = body["outputs"]
    served = np.asarray(output["data"], dtype=np.float64)
    if output["name"] != "probability" or served.shape != (len(rows),):
        raise GateFailed(
            f"expected output 'probability' of {len(rows)} values, "
            f"got {output['name']!r} with shape {list(served.shape)}"
        )
    return served


def stage(
    store: ArtifactStore, model_name: str, onnx: Path, digest: str, schema_path: Path
) -> ModelVersion:
    """Upload the version's files to its registry folder, where servers that fetch their
    model (pods) find them. Content-addressed, so harmless on rollback: without a record.json
    and a stable.json pointing at it, the folder is not a deployed version."""
    folder = version_key(model_name, digest)
    onnx_key = f"{folder}/{Artifact.ONNX.filename}"
    schema_key = f"{folder}/{ModelFile.FEATURE_SCHEMA.value}"
    uploaded = store.upload_file(onnx, onnx_key)
    if uploaded != digest:
        raise GateFailed(
            f"ONNX model {onnx} changed during deploy: uploaded sha256 {uploaded}, "
            f"verified {digest}"
        )
    store.upload_file(schema_path, schema_key)
    return ModelVersion(
        name=model_name,
        digest=digest,
        onnx=onnx,
        schema=schema_path,
        onnx_uri=store.uri(onnx_key),
        schema_uri=store.uri(schema_key),
    )


def write_record(store: ArtifactStore, rollout: Rollout, booster: Path, dataset_uri: str) -> None:
    """The version's record.json, written before stable.json may point at the version."""
    store.put_json(
        f"{rollout.version_key}/{RECORD_FILE}",
        {
            "model_name": rollout.model_name,
            "digest": rollout.digest,
            "model_digest": file_sha256(booster),
            "dataset_uri": dataset_uri,
            "deployed_at": rollout.deployed_at,
            "smoke": {"rows": rollout.smoke_rows, "max_abs_diff": rollout.max_abs_diff},
            "previous_digest": rollout.previous_digest,
            "canary_steps": len(rollout.canary),
        },
    )


def run(ctx: StepContext) -> Outcome:
    dataset_uri, model_name, spec = ctx.get(DATASET_URI), ctx.get(MODEL_NAME), ctx.spec(DeploySpec)
    digest = evaluated_digest(ctx.artifact(Artifact.EVALUATION), ctx.get(ONNX_DIGEST))
    rollout = deploy(
        store=ctx.store,
        onnx=ctx.artifact(Artifact.ONNX),
        onnx_digest=digest,
        model_dir=ctx.artifact(Artifact.MODEL),
        dataset_uri=dataset_uri,
        model_name=model_name,
        spec=spec,
        progress_file=ctx.progress_file,
        workflow=ctx.environ.get(Env.WORKFLOW_NAME.value),
        expected=evaluated_scores(ctx.artifact(Artifact.EVALUATION)),
    )
    record = asdict(rollout)
    ctx.output(Artifact.ROLLOUT).write_text(
        orjson.dumps(record, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    ctx.output(Artifact.ROLLOUT_REPORT).write_text(rollout_html(record))
    # Only immutable registry files are subjects: stable.json moves with the next deploy and
    # record.json is rewritten when the same model is deployed again.
    version = rollout.version_key
    return Outcome(
        parameters={Param.DEPLOYED_DIGEST: rollout.digest, Param.ENDPOINT: rollout.endpoint},
        statement=Statement(
            output_keys=[
                f"{version}/{Artifact.ONNX.filename}",
                f"{version}/{ModelFile.FEATURE_SCHEMA.value}",
            ],
            datasets=[dataset_uri],
            parameters={"model_name": model_name, "deploy_spec": spec.model_dump(mode="json")},
        ),
    )
