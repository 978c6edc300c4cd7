"""Prometheus metrics of the model server, served at `GET /metrics`.

Canary analysis reads these from a stable and a canary server and compares them, so the
names and labels are a contract:

- `mlpipe_inference_requests_total{model, version, status}` (counter): inference requests
  by HTTP status ("200", "400", ...). A request for a model the server does not hold counts
  with `model=""` and `version=""`, so unknown names cannot grow the label set.
- `mlpipe_inference_request_duration_seconds{model, version}` (histogram): time in the
  server from the request's arrival to its response, for every status.
- `mlpipe_inference_batch_size{model, version}` (histogram): rows per onnxruntime call,
  after dynamic batching merged concurrent requests.
- `mlpipe_inference_score{model, version}` (histogram): every predicted P(label = 1), in
  20 buckets of width 0.05 (`le` = 0.05 ... 1.0, +Inf): the score distribution whose PSI
  between canary and stable shows a shifted model. Merge adjacent buckets for coarser bins.
- `mlpipe_model_info{model, version, digest}` (gauge, 1): the version each name serves
  now; the series of a replaced version is removed on reload.
- `process_*`: CPU, memory and file descriptors of the server process.

Everything is recorded on the event loop thread; the score histogram relies on that.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = tuple(float(2**power) for power in range(13))  # 1 ... 4096 rows
SCORE_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))  # 0.05 ... 1.0
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class _ScoreSeries:
    counts: NDArray[np.int64]
    """Per bucket, not cumulative; the last one is +Inf."""
    total: float = 0.0


class ScoreHistogram:
    """A histogram observed a whole batch at a time: one numpy pass instead of one
    `Histogram.observe` call per row, which costs ~1 us each under a lock."""

    def __init__(self, name: str, documentation: str, bounds: NDArray[np.float64]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self._series: dict[tuple[str, str], _ScoreSeries] = {}

    def observe(self, model: str, version: str, scores: NDArray[np.float32]) -> None:
        series = self._series.get((model, version))
        if series is None:
            series = _ScoreSeries(np.zeros(len(self.bounds) + 1, dtype=np.int64))
            self._series[(model, version)] = series
        # side="left": a score equal to a bound belongs to that bucket (`le` is inclusive).
        buckets = np.searchsorted(self.bounds, scores, side="left")
        series.counts += np.bincount(buckets, minlength=len(series.counts))
        series.total += float(scores.sum(dtype=np.float64))

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["model", "version"])
        edges = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        for labels, series in self._series.items():
            cumulative = np.cumsum(series.counts)
            family.add_metric(
                list(labels),
                [(edge, float(count)) for edge, count in zip(edges, cumulative, strict=True)],
                series.total,
            )
        yield family


class ServerMetrics:
    """All metrics of one server, in a registry of its own (not the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlpipe_inference_requests",
            "Inference requests by model, version and HTTP status.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlpipe_inference_request_duration_seconds",
            "Time from an inference request's arrival to its response.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "mlpipe_inference_batch_size",
            "Rows per onnxruntime call, after dynamic batching.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.scores = ScoreHistogram(
            "mlpipe_inference_score",
            "Predicted probability of the positive class, per row.",
            np.asarray(SCORE_BUCKETS, dtype=np.float64),
        )
        self.registry.register(self.scores)
        self.model_info = Gauge(
            "mlpipe_model_info",
            "The version (and ONNX sha256) each model name serves now.",
            ["model", "version", "digest"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def for_model(self, model: str, version: str, digest: str) -> "ModelMetrics":
        self.model_info.labels(model, version, digest).set(1)
        return ModelMetrics(self, model, version, digest)

    def unknown_model(self, status: int) -> None:
        self.requests.labels("", "", str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelMetrics:
    """The series of one model version, bound once: `labels()` per request costs a lock
    and a dict lookup more than needed on the hot path."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str, digest: str) -> None:
        self._metrics = metrics
        self._labels = (model, version)
        self._digest = digest
        self._latency = metrics.latency.labels(model, version)
        self._batch_size = metrics.batch_size.labels(model, version)
        self._by_status: dict[int, Counter] = {}

    def request(self, status: int, seconds: float) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._metrics.requests.labels(*self._labels, str(status))
            self._by_status[status] = counter
        counter.inc()
        self._latency.observe(seconds)

    def batch(self, scores: NDArray[np.float32]) -> None:
        self._batch_size.observe(len(scores))
        self._metrics.scores.observe(*self._labels, scores)

    def retire(self) -> None:
        """This version no longer serves: drop its info series (counters stay cumulative)."""
        self._metrics.model_info.remove(*self._labels, self._digest)
