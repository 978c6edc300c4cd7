"""`python -m serving --model FILE.onnx --schema feature-schema.json --name NAME [...]`

Everything that can fail is checked before the port opens (digest, schema, model, a probe
prediction), so a server that answers `/v2/health/ready` can score. A startup failure is
one line on stderr and exit code 2.
"""

import argparse
import sys
from pathlib import Path

import uvicorn

from serving.app import create_app
from serving.model import ModelError, load_model
from serving.repository import ModelRepository
from serving.schema import SchemaError, read_schema


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="ONNX binary classifier")
    parser.add_argument("--schema", type=Path, required=True, help="feature-schema.json")
    parser.add_argument("--name", required=True, help="model name in the protocol's URLs")
    parser.add_argument("--version", help="model version (default: sha256 of the model file)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--digest", help="refuse to start unless the model's sha256 is this")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        schema = read_schema(args.schema)
        model = load_model(args.model, schema, args.name, args.version, args.digest)
    except (SchemaError, ModelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"serving model {model.name!r} version {model.version} (sha256 {model.digest}) "
        f"on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(ModelRepository([model])),
        host=args.host,
        port=args.port,
        # uvloop + httptools and no access log: the request path must stay lean
        # (single-row requests at thousands per second on two cores).
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="off",
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
