"""`python -m serving --model LOCATION --name NAME [...]`: serve one ONNX model over the
Open Inference Protocol v2 (REST) until SIGTERM, then drain in-flight requests and exit.

LOCATION is a path or `s3://bucket/key` (S3 settings from MLPIPE_S3_ENDPOINT,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION). Everything that can fail is checked
before the port opens (fetch, digest, schema, model, a probe prediction), so a server that
answers `/v2/health/ready` can score. A startup failure is one line on stderr and exit 2.
"""

import argparse
import os
import sys

import uvicorn

from serving.app import MODEL_NAME, InferenceServer, bad_name
from serving.batching import Batcher
from serving.loader import LOAD_ERRORS, ModelSource, load_model
from serving.metrics import ServerMetrics
from serving.repository import Loader, ModelRepository, Served
from serving.source import S3Settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="ONNX classifier: path or s3://bucket/key")
    parser.add_argument(
        "--schema", help="feature-schema.json: path or s3:// URI (default: beside the model)"
    )
    parser.add_argument("--name", required=True, help="model name in the protocol's URLs")
    parser.add_argument("--version", help="model version (default: sha256 of the model file)")
    parser.add_argument("--digest", help="refuse to start unless the model's sha256 is this")
    parser.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="(default: 8080)")
    parser.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=1024,
        help="most rows in one request (more: 400) and in one merged batch (default: 1024)",
    )
    parser.add_argument(
        "--max-batch-wait-ms",
        type=_non_negative_float,
        default=0.0,
        help="how long a batch waits for more requests; 0 merges only the requests the "
        "server has already read, with no timer (default: 0)",
    )
    parser.add_argument(
        "--dynamic-batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="merge concurrent requests into one onnxruntime call (default: on)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=30.0,
        help="seconds to let in-flight requests finish after SIGTERM (default: 30)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not MODEL_NAME.fullmatch(args.name):
        print(f"error: {bad_name(args.name)}", file=sys.stderr)
        return 2
    metrics = ServerMetrics()
    repository = ModelRepository(version_loader(S3Settings.from_env(os.environ), metrics, args))
    source = ModelSource(
        model=args.model, schema=args.schema, digest=args.digest, version=args.version
    )
    try:
        model = repository.add(args.name, source).model
    except LOAD_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"serving model {model.name!r} version {model.version} (sha256 {model.digest}) "
        f"on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    uvicorn.run(
        InferenceServer(repository, metrics, args.max_batch_size),
        host=args.host,
        port=args.port,
        # uvloop + httptools and no access log: the request path must stay lean.
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="off",
        server_header=False,
        log_level="info",
        # uvicorn's shutdown stops accepting, then waits for in-flight requests this long.
        timeout_graceful_shutdown=args.drain_timeout,
    )
    return 0


def version_loader(s3: S3Settings, metrics: ServerMetrics, args: argparse.Namespace) -> Loader:
    """How the repository turns a source into a served version: the model, its own
    batcher and its own metric series."""

    def load(name: str, source: ModelSource) -> Served:
        model = load_model(name, source, s3)
        model_metrics = metrics.for_model(name, model.version, model.digest)
        batcher = Batcher(
            model.predict,
            model_metrics.batch,
            max_rows=args.max_batch_size,
            max_wait_seconds=args.max_batch_wait_ms / 1000,
            enabled=args.dynamic_batching,
        )
        return Served(model, source, batcher, model_metrics)

    return load


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
