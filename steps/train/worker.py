"""One worker of distributed XGBoost training: `python -m steps train ... --rank I`.

N workers join XGBoost's collective through the tracker (steps/train/tracker.py); worker I reads
only train shard I and valid shard I. XGBoost merges the quantile sketches, gradient
histograms and metrics across workers, so every worker ends with the very same model:
its digest is each worker's output and the model check compares them. Worker 0 uploads
the model bundle to `models/<model_digest>/`.

The model is reproducible: same data, seed and number of workers give the same bytes
(exact `hist` histograms, fixed batch size, ranks pinned to `--rank`, no subsampling).
"""

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xgboost
from xgboost import collective
from xgboost.callback import EarlyStopping, TrainingCallback
from xgboost.core import XGBoostError

from steps.core.errors import BadInput
from steps.core.harness import Outcome, Statement, StepContext
from steps.core.names import CategoricalSplits, ModelFile, Param, model_prefix
from steps.core.outputs import report_progress
from steps.core.registry import DATASET_URI, RANK, TRACKER_HOST, TRACKER_PORT
from steps.core.specs import TrainSpec
from steps.core.store import ArtifactStore
from steps.data.dataset import (
    DatasetManifest,
    FeatureKind,
    Split,
    decode_categories,
    read_manifest,
    read_split,
)
from steps.data.features import (
    FeatureSchema,
    categorical_frame,
    encode,
    save_schema,
    schema_from_manifest,
)
from steps.data.profile import ReferenceProfile, assemble, count, layout_for, quantile_edges
from steps.train.curve import TRAIN_NAME, VALID_NAME, LearningCurve
from steps.train.tracker import CollectiveError, xgboost_reason

BATCH_ROWS = 65_536
"""Rows encoded per DataIter batch: bounds the float32 copy held while XGBoost sketches.
Part of what makes a model reproducible: a different batch size may move a bin edge."""

# Early stopping watches valid AUC (the metric the evaluation gate uses); log loss is
# recorded for the learning curve.
EVAL_METRICS = ["logloss", "auc"]
STOPPING_METRIC = "auc"
TRAINING_SECONDS_LABEL = "training seconds (quantile sketch and boosting)"
SHARD_WORKING_SET = 2.5
"""A worker's peak above its libraries, in multiples of its train shard held in Arrow
(benchmarks/end_to_end.py measures it: about 2x at 4M rows and 2 workers)."""


@dataclass(frozen=True)
class TrainedModel:
    """What one worker ends with; the same on every worker of the group."""

    booster: bytes
    digest: str
    best_iteration: int
    valid_auc: float
    schema: FeatureSchema
    curve: LearningCurve
    importance: list[tuple[str, float]]
    profile: ReferenceProfile


def batches(shard: pa.Table) -> Iterator[pd.DataFrame]:
    """The shard as DataFrames of BATCH_ROWS rows, categories as strings: only one batch
    at a time exists in pandas, next to the shard held in Arrow (categories as codes)."""
    for start in range(0, shard.num_rows, BATCH_ROWS):
        frame: pd.DataFrame = decode_categories(shard.slice(start, BATCH_ROWS)).to_pandas()
        yield frame


class ShardBatches(xgboost.DataIter):
    """Feeds a shard to XGBoost one encoded batch at a time: neither the float32 matrix nor
    a DataFrame of the whole shard ever exists.

    Categorical features arrive as their index in the schema's categories
    (steps.data.features.encode). With `codes` (the default) they get ordinary numeric splits,
    a plain numeric tree ensemble that the ONNX export converts exactly; with `native` the
    same codes go in as pandas `category` columns for XGBoost's category-set splits, whose
    ONNX export is the quantize step's to accept or refuse.
    """

    def __init__(self, shard: pa.Table, schema: FeatureSchema, label: str) -> None:
        super().__init__(release_data=True)
        self._shard = shard
        self._schema = schema
        self._label = label
        self._batches = batches(shard)

    def reset(self) -> None:
        self._batches = batches(self._shard)

    def next(self, input_data: Callable[..., None]) -> bool:
        batch = next(self._batches, None)
        if batch is None:
            return False
        matrix = encode(batch, self._schema)
        native = self._schema.categorical is CategoricalSplits.NATIVE
        input_data(
            data=categorical_frame(matrix, self._schema) if native else matrix,
            label=batch[self._label].to_numpy(dtype=np.float32),
            feature_names=self._schema.names,
        )
        return True


class ProgressReporter(TrainingCallback):
    """Argo's self-reported progress: rounds done out of rounds asked for."""

    def __init__(self, progress_file: Path | None, total: int) -> None:
        super().__init__()
        self._file = progress_file
        self._total = total

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        report_progress(self._file, epoch + 1, self._total)
        return False


@contextmanager
def training_group(rank: int, host: str, port: int, timeout_seconds: int) -> Iterator[None]:
    """Membership in the collective for the body; XGBoost's failures become one line."""
    try:
        with collective.CommunicatorContext(
            dmlc_communicator="rabit",
            dmlc_tracker_uri=host,
            dmlc_tracker_port=port,
            # The tracker sorts task ids as strings (`sortby="task"`): zero-padding keeps
            # worker 10 after worker 9, so the collective rank equals --rank.
            dmlc_task_id=f"{rank:05d}",
            dmlc_timeout=timeout_seconds,
        ):
            yield
    except XGBoostError as error:
        raise CollectiveError(
            f"worker {rank} lost its training group (tracker {host}:{port}, timeout "
            f"{timeout_seconds}s; a peer or the tracker died, hung or is unreachable): "
            f"{xgboost_reason(error)}"
        ) from None


def train_worker(
    store: ArtifactStore,
    dataset_uri: str,
    spec: TrainSpec,
    rank: int,
    tracker_host: str,
    tracker_port: int,
    progress_file: Path | None,
) -> TrainedModel:
    """Train as worker `rank` of the group; returns the model every worker agrees on."""
    manifest = read_manifest(store, dataset_uri)
    if not 0 <= rank < manifest.shards:
        raise BadInput(
            f"--rank {rank} out of range: dataset {dataset_uri} has {manifest.shards} shards"
        )
    schema = schema_from_manifest(manifest, spec.categorical)
    check_memory(manifest, dataset_uri, spec.memory_limit_mb)
    train = _shard(store, dataset_uri, manifest, Split.TRAIN, rank)
    valid = _shard(store, dataset_uri, manifest, Split.VALID, rank)
    rows = train.num_rows
    with training_group(rank, tracker_host, tracker_port, spec.timeout_seconds):
        if collective.get_world_size() != manifest.shards or collective.get_rank() != rank:
            raise BadInput(
                f"worker --rank {rank} got rank {collective.get_rank()} of a group of "
                f"{collective.get_world_size()}, but dataset {dataset_uri} has "
                f"{manifest.shards} shards: run one worker per shard, ranks 0 to "
                f"{manifest.shards - 1}"
            )
        profile = _reference_profile(train, schema, manifest)
        started = time.perf_counter()
        native = spec.categorical is CategoricalSplits.NATIVE
        dtrain = xgboost.QuantileDMatrix(
            ShardBatches(train, schema, manifest.label), nthread=spec.cpu, enable_categorical=native
        )
        dvalid = xgboost.QuantileDMatrix(
            ShardBatches(valid, schema, manifest.label),
            ref=dtrain,
            nthread=spec.cpu,
            enable_categorical=native,
        )
        # The matrices hold their own compressed copy: the shards are no longer needed.
        del train, valid
        booster, curve = _fit(dtrain, dvalid, spec, _scale_pos_weight(spec, profile), progress_file)
        # The log says where a slow worker spent its time (benchmarks/train.py reads it too).
        print(
            f"worker {rank}: {rows} rows, {curve.rounds} rounds, "
            f"{TRAINING_SECONDS_LABEL} {time.perf_counter() - started:.3f}",
            flush=True,
        )
    report_progress(progress_file, spec.rounds, spec.rounds)
    # Keep only the rounds up to the best one: what gets exported, evaluated and served is
    # the early-stopped model, and the digest names exactly those trees. (Slicing drops the
    # category names XGBoost stores with a native model; the feature schema keeps them.)
    best = booster[: curve.best_iteration + 1]
    raw = bytes(best.save_raw("ubj"))
    # One float per used feature for a single-target model (lists are per target).
    gains = {
        name: float(np.sum(score)) for name, score in best.get_score(importance_type="gain").items()
    }
    return TrainedModel(
        booster=raw,
        digest=hashlib.sha256(raw).hexdigest(),
        best_iteration=curve.best_iteration,
        valid_auc=curve.metrics[VALID_NAME][STOPPING_METRIC][curve.best_iteration],
        schema=schema,
        curve=curve,
        importance=sorted(
            ((name, gains.get(name, 0.0)) for name in schema.names),
            key=lambda item: -item[1],
        ),
        profile=profile,
    )


def check_memory(manifest: DatasetManifest, dataset_uri: str, limit_mb: int | None) -> None:
    """Refuse, before reading anything, a shard the worker's memory cannot hold."""
    rows = -(-manifest.rows.train // manifest.shards)  # the largest shard
    # The shard in Arrow as _shard reads it: float64 numbers, int32 category codes, int8 label.
    row_bytes = 1 + sum(8 if f.kind is FeatureKind.NUMERIC else 4 for f in manifest.features)
    need_mb = SHARD_WORKING_SET * rows * row_bytes / 2**20
    if limit_mb is None or need_mb <= limit_mb:
        return
    workers = int(np.ceil(manifest.shards * need_mb / limit_mb))
    raise BadInput(
        f"dataset {dataset_uri}: a train shard of {rows} rows needs about {need_mb:.0f} MB in "
        f"a worker, over train.memory_limit_mb {limit_mb}: use at least {workers} workers "
        f"(train.workers; it has {manifest.shards} shards) or raise the limit"
    )


def _shard(
    store: ArtifactStore, dataset_uri: str, manifest: DatasetManifest, split: Split, rank: int
) -> pa.Table:
    """The worker's shard of `split` in Arrow: features and label only."""
    shard = read_split(store, dataset_uri, split, shard=rank, model_inputs=True)
    where = f"dataset {dataset_uri} {split} shard {rank}"
    if shard.num_rows == 0:
        raise BadInput(f"{where} has no rows; every worker needs data (use fewer shards)")
    labels = shard.column(manifest.label)
    if labels.null_count or not pc.all(pc.is_in(labels, pa.array([0, 1], labels.type))).as_py():
        raise BadInput(f"{where}: label {manifest.label!r} must be 0/1 without missing values")
    return shard


def _reference_profile(
    shard: pa.Table, schema: FeatureSchema, manifest: DatasetManifest
) -> ReferenceProfile:
    """The profile of the whole training split: worker 0's deciles as cut points for
    everyone, then every worker's counts summed (over batches, then over workers)."""
    numeric = [f.name for f in schema.features if f.kind is FeatureKind.NUMERIC]
    edges = collective.broadcast(quantile_edges(shard.select(numeric).to_pandas(), schema), 0)
    layout = layout_for(schema, manifest.label, edges, manifest.slice_column)
    local = np.sum([count(batch, layout) for batch in batches(shard)], axis=0)
    total = collective.allreduce(local, collective.Op.SUM).reshape(local.shape)
    return assemble(total, layout)


def _scale_pos_weight(spec: TrainSpec, profile: ReferenceProfile) -> float:
    """The spec's weight, else negatives/positives over the whole training split (the
    profile's counts are already summed over all workers, so every worker agrees)."""
    positives = profile.overall.positives
    negatives = profile.overall.rows - positives
    if positives == 0 or negatives == 0:
        raise BadInput(
            f"training split has {positives} positive and {negatives} negative rows "
            "over all shards; a classifier needs both"
        )
    return spec.scale_pos_weight if spec.scale_pos_weight is not None else negatives / positives


def _fit(
    dtrain: xgboost.DMatrix,
    dvalid: xgboost.DMatrix,
    spec: TrainSpec,
    scale_pos_weight: float,
    progress_file: Path | None,
) -> tuple[xgboost.Booster, LearningCurve]:
    params: dict[str, Any] = {
        "objective": "binary:logistic",
        "eval_metric": EVAL_METRICS,
        "tree_method": "hist",
        "eta": spec.eta,
        "max_depth": spec.max_depth,
        "seed": spec.seed,
        "nthread": spec.cpu,
        "scale_pos_weight": scale_pos_weight,
    }
    callbacks: list[TrainingCallback] = [ProgressReporter(progress_file, spec.rounds)]
    if spec.early_stopping_rounds is not None:
        callbacks.append(
            EarlyStopping(
                rounds=spec.early_stopping_rounds,
                metric_name=STOPPING_METRIC,
                data_name=VALID_NAME,
                maximize=True,
            )
        )
    # Each evaluation predicts its whole split every round: the training split is the
    # largest, and nothing but the learning curve reads its metrics.
    evals = [(dtrain, TRAIN_NAME)] if spec.eval_train_split else []
    evals_log: dict[str, Any] = {}
    booster = xgboost.train(
        params,
        dtrain,
        num_boost_round=spec.rounds,
        evals=[*evals, (dvalid, VALID_NAME)],
        evals_result=evals_log,
        verbose_eval=False,
        callbacks=callbacks,
    )
    rounds = booster.num_boosted_rounds()
    best = booster.best_iteration if spec.early_stopping_rounds is not None else rounds - 1
    curve = LearningCurve(
        rounds=rounds,
        best_iteration=best,
        early_stopping_rounds=spec.early_stopping_rounds,
        metrics={
            data: {metric: [float(v) for v in values] for metric, values in metrics.items()}
            for data, metrics in evals_log.items()
        },
    )
    return booster, curve


def write_bundle(model: TrainedModel, folder: Path) -> None:
    """The model bundle's files (steps.core.names.ModelFile) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ModelFile.BOOSTER).write_bytes(model.booster)
    save_schema(model.schema, folder / ModelFile.FEATURE_SCHEMA)
    (folder / ModelFile.LEARNING_CURVE).write_text(model.curve.model_dump_json(indent=2) + "\n")
    importance = {
        "importance_type": "gain",
        "features": [{"name": name, "gain": gain} for name, gain in model.importance],
    }
    (folder / ModelFile.IMPORTANCE).write_text(json.dumps(importance, indent=2) + "\n")
    (folder / ModelFile.REFERENCE_PROFILE).write_text(
        model.profile.model_dump_json(indent=2) + "\n"
    )


def publish_bundle(store: ArtifactStore, model: TrainedModel) -> str:
    """Upload the bundle to `models/<digest>/`; returns that prefix. Content-addressed,
    so uploading the same model again rewrites the same bytes."""
    prefix = model_prefix(model.digest)
    with tempfile.TemporaryDirectory(prefix="mlpipe-model-") as tmp:
        write_bundle(model, Path(tmp))
        store.upload_dir(Path(tmp), prefix)
    return prefix


def run(ctx: StepContext) -> Outcome:
    dataset_uri, spec, rank = ctx.get(DATASET_URI), ctx.spec(TrainSpec), ctx.get(RANK)
    tracker_host, tracker_port = ctx.get(TRACKER_HOST), ctx.get(TRACKER_PORT)
    model = train_worker(
        ctx.store, dataset_uri, spec, rank, tracker_host, tracker_port, ctx.progress_file
    )
    statement = None
    if rank == 0:
        # Every worker ends with the same model: rank 0, which stores it, vouches for it.
        bundle = publish_bundle(ctx.store, model)
        statement = Statement(
            output_keys=[f"{bundle}/"],
            datasets=[dataset_uri],
            parameters={"train_spec": spec.model_dump(mode="json")},
        )
    return Outcome(
        parameters={
            Param.MODEL_DIGEST: model.digest,
            Param.BEST_ITERATION: model.best_iteration,
            Param.VALID_AUC: model.valid_auc,
        },
        statement=statement,
    )
