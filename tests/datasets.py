"""Test helpers for the model steps: small canonical datasets written straight to S3,
a quickly trained model bundle, and running a step as the workflow does.

Datasets follow the manifest contract (datasets/<digest>/ with sharded train/valid, one
test file, manifest.json last) without going through provenance, so train/quantize/
evaluate tests do not depend on the audit and provenance steps.
"""

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from steps.core.names import DatasetFile, ModelFile
from steps.core.store import ArtifactStore
from steps.data.dataset import Split, load_split, read_manifest
from steps.data.features import encode, save_schema, schema_from_manifest

LABEL = "churned"
ROW_KEY = "customer_id"
SLICE = "region"
REGIONS = ["central", "east", "north", "south"]
PLANS = ["basic", "plus", "pro"]
NUMERIC = ["tenure_months", "monthly_charges", "support_calls"]


def churn_frame(rows: int, seed: int, signal: float = 1.0) -> pd.DataFrame:
    """Churn-like rows: the label depends on tenure, calls, plan and region (scaled by
    `signal`; 0 gives pure noise), with missing values in every feature."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, rows)
    charges = rng.normal(70, 20, rows)
    calls = rng.poisson(2, rows).astype(np.float64)
    region = rng.choice(REGIONS, rows)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2])
    logit = signal * (
        -0.06 * tenure + 0.5 * calls + (plan == "basic") * 0.8 + (region == "east") * 0.7 - 0.5
    )
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pd.DataFrame(
        {
            ROW_KEY: [f"c{seed}-{i:06d}" for i in range(rows)],
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "region": pd.Series(region, dtype=object),
            "plan": pd.Series(plan, dtype=object),
            LABEL: churned,
        }
    )
    for column in [*NUMERIC, "region", "plan"]:
        frame.loc[rng.random(rows) < 0.03, column] = None
    return frame


def write_dataset(
    store: ArtifactStore,
    frame: pd.DataFrame,
    shards: int,
    *,
    valid: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
) -> str:
    """Write `frame` as a canonical dataset and return its URI.

    Without explicit `valid`/`test` frames the rows split 60/20/20 in order; train and
    valid are dealt round-robin into `shards` shards.
    """
    if valid is None or test is None:
        cut1, cut2 = int(len(frame) * 0.6), int(len(frame) * 0.8)
        frame, valid, test = frame.iloc[:cut1], frame.iloc[cut1:cut2], frame.iloc[cut2:]
    files = {DatasetFile.TEST.value: test}
    for index in range(shards):
        files[DatasetFile.TRAIN_SHARD.value.format(index=index)] = frame.iloc[index::shards]
        files[DatasetFile.VALID_SHARD.value.format(index=index)] = valid.iloc[index::shards]
    everything = pd.concat([frame, valid, test])
    features: list[dict[str, object]] = []
    for name in [c for c in frame.columns if c not in (LABEL, ROW_KEY)]:
        if pd.api.types.is_numeric_dtype(frame[name]):
            features.append({"name": name, "kind": "numeric"})
        else:
            categories = sorted(everything[name].dropna().unique())
            features.append({"name": name, "kind": "categorical", "categories": categories})
    with tempfile.TemporaryDirectory() as tmp:
        for rel, part in files.items():
            path = Path(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            part.reset_index(drop=True).to_parquet(path, index=False)
        digest = hashlib.sha256(
            b"".join(Path(tmp, rel).read_bytes() for rel in sorted(files))
        ).hexdigest()
        prefix = f"datasets/{digest}"
        store.upload_dir(Path(tmp), prefix)
    manifest = {
        "digest": digest,
        "hash": "sha256",
        "shards": shards,
        "rows": {"train": len(frame), "valid": len(valid), "test": len(test)},
        "label": LABEL,
        "row_key": ROW_KEY if ROW_KEY in frame.columns else None,
        "slice_column": SLICE if SLICE in frame.columns else None,
        "features": features,
    }
    store.put_json(f"{prefix}/{DatasetFile.MANIFEST.value}", manifest)
    return store.uri(prefix)


def quick_bundle(store: ArtifactStore, dataset_uri: str, folder: Path, rounds: int = 30) -> Path:
    """A real XGBoost model of the dataset (model.ubj and feature-schema.json, named
    features as the train step writes them), trained in-process without the collective:
    enough for the export and evaluation steps, in a fraction of a second."""
    manifest = read_manifest(store, dataset_uri)
    schema = schema_from_manifest(manifest)
    train = load_split(store, dataset_uri, Split.TRAIN)
    matrix = xgboost.DMatrix(
        encode(train, schema), label=train[manifest.label], feature_names=schema.names
    )
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1}
    booster = xgboost.train(params, matrix, num_boost_round=rounds)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ModelFile.BOOSTER).write_bytes(bytes(booster.save_raw("ubj")))
    save_schema(schema, folder / ModelFile.FEATURE_SCHEMA)
    return folder


def run_step(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m steps <args>` in a subprocess, as a workflow container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "steps", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_parameters(out: Path) -> dict[str, str]:
    """The output parameters a step wrote under `out`."""
    return {path.name: path.read_text() for path in (out / "parameters").iterdir()}
