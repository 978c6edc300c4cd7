"""The oracle a retraining loop is measured against (`mlpipe schedule simulate`): a model
retrained on every day's data, scored on the next day's.

Each window is trained on with XGBoost alone, its own categories as the schema, the rounds,
depth and learning rate the pipeline trains with, and the next window is scored with the
same AUC the drift check reports for the served model (steps/evaluate/metrics.score_metrics),
so the two numbers compare like for like. Not a pipeline step: the simulation runs
`python -m steps.train.oracle WINDOW...` once after its last day and reads one JSON list from
stdout, the AUC per window (null for the first, which no earlier window can train for).
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from steps.core.errors import StepError
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


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.train.oracle", description=__doc__)
    parser.add_argument("windows", nargs="+", type=Path, help="the days' files, in order")
    parser.add_argument("--data-spec", required=True, help="DataSpec as JSON")
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--max-depth", type=int, required=True)
    parser.add_argument("--eta", type=float, required=True)
    args = parser.parse_args(argv)
    spec = DataSpec.from_json_arg(args.data_spec)
    windows = [read_table(str(path), spec, None) for path in args.windows]
    print(json.dumps(oracle_aucs(windows, spec, args.rounds, args.max_depth, args.eta)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(cli(sys.argv[1:]))
    except StepError as failure:
        print(f"error: {failure}", file=sys.stderr)
        sys.exit(failure.exit_code)
