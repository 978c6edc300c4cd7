"""`python -m serving [--registry LOCATION] [--model LOCATION --name NAME] [...]`: serve ONNX
models over the Open Inference Protocol v2 (REST) until SIGTERM, then drain in-flight
requests and exit.

With `--registry` (`s3://bucket/registry`, or a folder laid out alike), the server serves
every model with a stable version in the model registry, each checked against the digest
`stable.json` records: a restart restores all of them. `--model` adds (or overrides) one
model by name. A LOCATION is a path or an S3 URI (S3 settings from MLPIPE_S3_ENDPOINT,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).

The repository endpoints that change what is served (load, unload) require the control
token when one is configured (`--token-file`, or MLPIPE_SERVING_TOKEN), and a load requires
the model's digest.

Everything that can fail is checked before the port opens (fetch, digest, schema, model, a
probe prediction, the listening socket), so a server that answers `/v2/health/ready` can
score. A startup failure is one line on stderr: exit 2 for a bad option, host, model or
registry entry, exit 3 when the store cannot be reached or the port cannot be had (in use,
privileged).
"""

import argparse
import contextlib
import errno
import os
import socket
import sys
from typing import NoReturn, TypeVar

import uvicorn

from serving.app import MAX_BODY_BYTES, MODEL_NAME, InferenceServer, bad_name
from serving.batching import Batcher
from serving.control import TOKEN_ENV, TokenError, read_token
from serving.loader import LOAD_ERRORS, ModelSource, load_model
from serving.metrics import ServerMetrics
from serving.registry import RegistryError, stable_models
from serving.repository import Loader, ModelRepository, Served
from serving.source import S3Settings, StorageUnavailable

BAD_INPUT = 2
INFRASTRUCTURE = 3


class OneLineParser(argparse.ArgumentParser):
    """A bad option is one line, as every other startup failure, not argparse's usage block
    (whose options fill a screen here)."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"error: {message} (--help lists the options)\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--registry",
        help="model registry to serve every stable model of: s3://bucket/prefix or a folder",
    )
    parser.add_argument("--model", help="ONNX classifier: path or s3://bucket/key")
    parser.add_argument(
        "--schema", help="feature-schema.json: path or s3:// URI (default: beside the model)"
    )
    parser.add_argument("--name", help="the --model's name in the protocol's URLs")
    parser.add_argument("--version", help="model version (default: sha256 of the model file)")
    parser.add_argument("--digest", help="refuse to start unless the model's sha256 is this")
    parser.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=8080, help="0 picks a free one (default: 8080)"
    )
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
        "--max-body-bytes",
        type=_positive_int,
        default=MAX_BODY_BYTES,
        help=f"largest inference request body; more: 413 (default: {MAX_BODY_BYTES})",
    )
    parser.add_argument(
        "--token-file",
        help=f"file holding the bearer token load and unload require (or set {TOKEN_ENV}; "
        "default: none, the control plane is open)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_non_negative_float,
        default=30.0,
        help="seconds to let in-flight requests finish after SIGTERM (default: 30)",
    )
    args = parser.parse_args(argv)
    if args.model is None and args.registry is None:
        parser.error("give --registry, --model (with --name), or both")
    if (args.model is None) != (args.name is None):
        parser.error("--model and --name go together")
    if args.name is not None and not MODEL_NAME.fullmatch(args.name):
        parser.error(bad_name(args.name))
    for option in ("schema", "digest", "version"):
        if getattr(args, option) is not None and args.model is None:
            parser.error(f"--{option} describes --model: give --model too")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    s3 = S3Settings.from_env(os.environ)
    metrics = ServerMetrics()
    repository = ModelRepository(version_loader(s3, metrics, args))
    try:
        token = read_token(args.token_file, os.environ)
        for name, source in startup_sources(args, s3):
            model = repository.add(name, source).model
            print(
                f"serving model {name!r} version {model.version} (sha256 {model.digest})",
                file=sys.stderr,
            )
        listener = listen(args.host, args.port)
    except (StorageUnavailable, PortUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return INFRASTRUCTURE
    except (TokenError, RegistryError, BadAddress, *LOAD_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT
    if token is None:
        print(
            "warning: no control token (--token-file or MLPIPE_SERVING_TOKEN): anyone who "
            "can reach the port can load and unload models",
            file=sys.stderr,
        )
    host, port = listener.getsockname()[:2]
    if listener.family == socket.AF_INET6:
        host = f"[{host}]"
    print(f"listening on http://{host}:{port}", file=sys.stderr)
    server = InferenceServer(
        repository,
        metrics,
        args.max_batch_size,
        max_body_bytes=args.max_body_bytes,
        token=token,
        registry=args.registry,
    )
    config = uvicorn.Config(
        server,
        # uvloop + httptools and no access log: the request path must stay lean.
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="off",
        server_header=False,
        # The server never looks at the client's address, so X-Forwarded-* need no parsing.
        proxy_headers=False,
        log_level="info",
        # uvicorn's shutdown stops accepting, then waits for in-flight requests this long.
        timeout_graceful_shutdown=args.drain_timeout,
    )
    # uvicorn drains on Ctrl-C, then raises it again.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listener])
    return 0


class BadAddress(Exception):
    """--host names no address of this machine."""


class PortUnavailable(Exception):
    """The address is fine, the port cannot be had: in use, or privileged."""


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound here rather than by uvicorn, which logs a failed bind
    as a multi-line error and exits 1."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family)
    except socket.gaierror as error:
        raise BadAddress(f"--host {host}: {error.strerror}") from None
    except OSError as error:
        # create_server's strerror repeats the address: the errno's own text is enough.
        reason = os.strerror(error.errno) if error.errno is not None else str(error)
        where = f"cannot listen on {host}:{port}: {reason}"
        if error.errno == errno.EADDRNOTAVAIL:
            raise BadAddress(f"{where} (--host is not an address of this machine)") from None
        raise PortUnavailable(where) from None


def startup_sources(args: argparse.Namespace, s3: S3Settings) -> list[tuple[str, ModelSource]]:
    """What to serve from the start: every stable model of the registry, and --model (in
    place of the registry's model of the same name)."""
    sources = []
    if args.registry is not None:
        for stable in stable_models(args.registry, s3):
            if not MODEL_NAME.fullmatch(stable.name):
                raise RegistryError(f"registry {args.registry}: {bad_name(stable.name)}")
            if stable.name != args.name:
                sources.append((stable.name, stable.source))
    if args.model is not None:
        model = ModelSource(
            model=args.model, schema=args.schema, digest=args.digest, version=args.version
        )
        sources.append((args.name, model))
    if not sources:
        raise RegistryError(
            f"registry {args.registry} holds no stable model (no <model>/stable.json) and "
            "no --model was given: nothing to serve"
        )
    return sources


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


def _port(text: str) -> int:
    value = _number(int, text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return value


def _positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


Number = TypeVar("Number", int, float)


def _number(kind: type[Number], text: str) -> Number:
    # argparse would name the type function instead ("invalid _port value").
    try:
        return kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
