"""The oracle a retraining loop is measured against (`mlpipe schedule simulate`): a model
retrained on every day's data, scored on the next day's.

Each window is trained on with XGBoost alone, its own categories as the schema, the rounds,
depth and learning rate the pipeline trains with, and the next window is scored with the
same AUC the drift check reports for the served model (steps/evaluate/metrics.score_metrics),
so the two numbers compare like for like. Not a pipeline step: the simulation runs
`python -m steps oracle WINDOW...` once after its last day and reads one JSON list from
stdout, the AUC per window (null for the first, which no earlier window can train for).
"""

import itertools
import json

import numpy as np
import pandas as pd
import xgboost

from steps.core.harness import Outcome, StepContext
from steps.core.registry import ETA, MAX_DEPTH, ORACLE_ROUNDS, WINDOWS
from steps.core.specs import DataSpec
from steps.data.dataset import FeatureKind, map_label, read_table
from steps.data.features import Feature, FeatureSchema, encode
from steps.evaluate.metrics import score_metrics


def schema_of(frame: pd.DataFrame, spec: DataSpec) -> FeatureSchema:
    """Every column but the label, row key and exclusions; categories as they occur."""
    skip = {spec.label, *spec.exclude, *([spec.row_key] if spec.row_key else [])}
    features = []
    for name in (str(column) for column in frame.columns if column not in skip):
        if name in spec.categorical:
            categories = sorted(str(value) for value in frame[name].dropna().unique())
            features.append(Feature(name=name, kind=FeatureKind.CATEGORICAL, categories=categories))
        else:
            features.append(Feature(name=name, kind=FeatureKind.NUMERIC))
    return FeatureSchema(features=features)


def oracle_aucs(
    windows: list[pd.DataFrame], spec: DataSpec, rounds: int, max_depth: int, eta: float
) -> list[float | None]:
    """AUC on window i of a model trained on window i - 1 (None for the first)."""
    aucs: list[float | None] = [None]
    for train, test in itertools.pairwise(windows):
        schema = schema_of(train, spec)
        labels = map_label(train[spec.label], spec.label, spec.positive_class, "oracle")
        booster = xgboost.train(
            {"objective": "binary:logistic", "max_depth": max_depth, "eta": eta, "nthread": 1},
            xgboost.DMatrix(encode(train, schema), label=labels.to_numpy()),
            num_boost_round=rounds,
        )
        truth = map_label(test[spec.label], spec.label, spec.positive_class, "oracle")
        scores = booster.predict(xgboost.DMatrix(encode(test, schema))).astype(np.float32)
        aucs.append(score_metrics(truth.to_numpy(np.int8), scores, 0.5).auc)
    return aucs


def run(ctx: StepContext) -> Outcome:
    spec = ctx.spec(DataSpec)
    windows = [read_table(str(path), spec, None) for path in ctx.repeated(WINDOWS)]
    aucs = oracle_aucs(windows, spec, ctx.get(ORACLE_ROUNDS), ctx.get(MAX_DEPTH), ctx.get(ETA))
    print(json.dumps(aucs))
    return Outcome()
