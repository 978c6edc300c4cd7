"""A stable model in the registry in a second, for the drift check's tests.

The pieces are the real ones, without the pipeline around them: the canonical dataset
layout (tests/support/datasets.py), a real XGBoost model, the reference profile counted by
steps/data/profile.py, the ONNX export of steps/quantize/step.py with the provenance statement
quantize writes, and the registry entry as steps/deploy/step.py writes it: exactly the files
the registry reader verifies and the drift check reads after a real run.
"""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from steps.core.attestation import attest
from steps.core.model_registry import stable_key, version_key, write_stable
from steps.core.names import Env, ModelFile, Step, model_prefix
from steps.core.store import ArtifactStore, file_sha256
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import schema_from_manifest
from steps.data.profile import assemble, count, layout_for, quantile_edges
from steps.deploy.step import Rollout, stage, write_record
from steps.quantize.step import load_booster, to_onnx
from tests.support.datasets import quick_bundle, write_dataset


def register_stable_model(
    store: ArtifactStore,
    frame: pd.DataFrame,
    model_name: str = "churn",
    deployed_at: datetime | None = None,
    with_profile: bool = True,
) -> str:
    """Train on `frame` (synth columns, label "yes"/"no"), register the model as stable;
    returns its ONNX digest."""
    data = frame.assign(churned=(frame["churned"] == "yes").astype("int8"))
    dataset_uri = write_dataset(store, data, shards=1)
    manifest = read_manifest(store, dataset_uri)
    schema = schema_from_manifest(manifest)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = quick_bundle(store, dataset_uri, Path(tmp) / "model")
        model_digest = file_sha256(bundle / ModelFile.BOOSTER)
        if with_profile:
            train = load_split(store, dataset_uri, Split.TRAIN)
            layout = layout_for(
                schema, manifest.label, quantile_edges(train, schema), manifest.slice_column
            )
            profile = bundle / ModelFile.REFERENCE_PROFILE
            profile.write_text(assemble(count(train, layout), layout).model_dump_json())
            store.upload_file(profile, f"{model_prefix(model_digest)}/{profile.name}")
        onnx = Path(tmp) / "model.onnx"
        onnx.write_bytes(to_onnx(load_booster(bundle), 15))
        digest = file_sha256(onnx)
        # The statement quantize writes in a run: the registry reader trusts the model only
        # with the provenance that produced it from this bundle.
        run = f"wf-{digest[:8]}"
        store.upload_file(onnx, f"{run}/pod/{onnx.name}")
        attest(
            Step.QUANTIZE, onnx.parent, store, datetime.now(UTC),
            outputs=[onnx], input_paths=[bundle],
            environ={Env.WORKFLOW_NAME.value: run, Env.ARTIFACT_PREFIX.value: f"{run}/pod"},
        )  # fmt: skip
        when = (deployed_at or datetime.now(UTC)).isoformat(timespec="seconds")
        rollout = Rollout(
            model_name=model_name,
            digest=digest,
            backend="local",
            endpoint="http://127.0.0.1:0/v2/models/" + model_name,
            smoke_rows=0,
            max_abs_diff=0.0,
            version_key=version_key(model_name, digest),
            stable_key=stable_key(model_name),
            deployed_at=when,
        )
        stage(store, model_name, onnx, digest, bundle / ModelFile.FEATURE_SCHEMA)
        write_record(store, rollout, bundle / ModelFile.BOOSTER, dataset_uri)
        write_stable(store, model_name, digest, when)
    return digest
