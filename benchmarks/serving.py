"""Model server throughput: ours (`python -m serving`) vs the HTTP limit of its stack, and vs
KServe's Python ModelServer wrapping the same onnxruntime session, on the same ONNX model.

The limit is a no-op ASGI app on the same uvicorn with the same settings (uvloop,
httptools, no access log, no proxy headers) that reads the same OIP JSON body, parses it
(orjson, as ours does) and returns a fixed response of our response's size: what any server
on this stack pays before it scores a row. Ours at >= 0.8x its throughput at c=32, with
p99 <= 1.5x its p99, is the target; the last line is `ratio=<ours / no-op at c=32>`.

Closed-loop load with single-row OIP v2 JSON requests at each concurrency (wrk: one C
thread, `c` keep-alive connections, each sending its next request when the last one is
answered). wrk loads a server hardest for the least client CPU; still, on a 2-core machine
it competes with the server for the cores, so absolute numbers are lower than on a
dedicated client, and the same for all servers. The machine is shared, and its background
load moves within seconds: so each concurrency is measured in rounds of short slices (1 s
warm-up, then `--duration` seconds per server, in alternating order), each round's ratio
compares slices taken seconds apart, and the figures reported are medians over the rounds.
Each slice also records the server process's CPU time per request (user + system, from
/proc through psutil): when the server is CPU-bound, ours / no-op in CPU per request is
the inverse of the throughput ratio it can reach, and it moves far less with the machine's
load than throughput does, so it says what ours costs beyond the HTTP limit.

Ours also runs with `--no-dynamic-batching`, to show what batching costs when there is
nothing to batch (c=1) and what it gains under load. KServe (`--no-kserve` skips it) is the
framework a team would otherwise deploy: ours vs it at c=32 is printed too.

KServe lives in its own venv (.mlpipe/bench-venv, created on first run with KSERVE and our
onnxruntime version): its pins (pandas<3, protobuf<7) conflict with the project's, so it
cannot share uv.lock. Needs `wrk`, the load generator, a system package (Debian/Ubuntu:
`apt-get install -y wrk`; macOS: `brew install wrk`).

    .venv/bin/python benchmarks/serving.py [--rounds 5] [--duration 3] [--concurrency 1 8 32]
        [--no-kserve]
"""

# Only the standard library at the top: the same file runs the KServe server inside the
# benchmark venv (`--kserve-server`), which has neither the project nor its dependencies.
import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".mlpipe" / "bench-venv"
MODEL_NAME = "bench"
KSERVE = "kserve==0.21.0"
FEATURES = 8
WARMUP_SECONDS = 1
TARGET_RATIO = 0.8
"""Ours / the no-op endpoint, throughput at the highest concurrency."""
TARGET_P99 = 1.5
"""Ours / the no-op endpoint, p99 latency at the highest concurrency."""
# The size of ours: the version is a sha256.
NOOP_RESPONSE = (
    b'{"model_name":"bench","model_version":"' + b"0" * 64 + b'","outputs":[{"name":'
    b'"probability","datatype":"FP32","shape":[1],"data":[0.5078125]}],"id":"1"}'
)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"failed": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Server:
    label: str
    url: str
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Result:
    label: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float
    failed: int
    cpu_us: float
    """The server process's CPU time (user + system) per request answered: unlike
    throughput, barely moved by what else the shared machine runs."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per concurrency")
    parser.add_argument("--duration", type=int, default=3, help="seconds per slice")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--no-kserve", dest="kserve", action="store_false", help="skip the KServe comparison"
    )
    parser.add_argument(
        "--kserve-server", nargs=2, metavar=("MODEL", "PORT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--noop-server", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kserve_server:
        serve_with_kserve(Path(args.kserve_server[0]), int(args.kserve_server[1]))
        return
    if args.noop_server:
        serve_noop(args.noop_server)
        return
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("benchmarks/serving.py needs wrk: apt-get install -y wrk (Debian/Ubuntu)")
    kserve_python = bench_venv() if args.kserve else None
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        model, row = export_model(Path(tmp))
        ours = [sys.executable, "-m", "serving", "--model", str(model), "--name", MODEL_NAME]
        servers = [
            start("ours", lambda port: [*ours, "--port", str(port)]),
            start(
                "ours, no batching",
                lambda port: [*ours, "--port", str(port), "--no-dynamic-batching"],
            ),
            start("no-op", lambda port: [sys.executable, __file__, "--noop-server", str(port)]),
        ]
        if kserve_python is not None:
            servers.append(
                start(
                    "kserve",
                    lambda port: [
                        str(kserve_python),
                        __file__,
                        "--kserve-server",
                        str(model),
                        str(port),
                    ],
                )
            )
        try:
            # KServe needs an id to answer (its response model requires one): both get it.
            body = json.dumps(
                {
                    "id": "1",
                    "inputs": [
                        {"name": "input", "datatype": "FP32", "shape": [1, FEATURES], "data": row}
                    ],
                }
            )
            check_same_answers([s for s in servers if s.label != "no-op"], body)
            script = Path(tmp) / "post.lua"
            script.write_text(WRK_SCRIPT % body)
            results = []
            for concurrency in args.concurrency:
                for round_ in range(args.rounds):
                    order = servers if round_ % 2 == 0 else servers[::-1]
                    sliced = [load(wrk, script, s, concurrency, args.duration) for s in order]
                    results.extend(sliced)
                    print(
                        f"c={concurrency:<3} round {round_ + 1}: "
                        + "  ".join(f"{r.label} {r.throughput:,.0f}" for r in sliced),
                        flush=True,
                    )
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(timeout=30)
    report(results, args.concurrency)


def bench_venv() -> Path:
    """The KServe venv's python, (re)built when the requirements it holds are not ours."""
    wanted = [KSERVE, f"onnxruntime=={metadata.version('onnxruntime')}"]
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / "requirements.txt"
    if stamp.is_file() and stamp.read_text().split() == wanted:
        return python
    print(f"installing {' '.join(wanted)} into {BENCH_VENV} ...", file=sys.stderr)
    venv.create(BENCH_VENV, with_pip=True, clear=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *wanted], check=True)
    stamp.write_text("\n".join(wanted) + "\n")
    return python


def export_model(folder: Path) -> tuple[Path, list[float]]:
    """A model the size the pipeline trains (200 rounds, depth 6) exported as the quantize
    step does; returns its path and one row to send."""
    import numpy as np
    import xgboost

    from steps.quantize.step import to_onnx

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(20_000, FEATURES)).astype(np.float32)
    logit = rows[:, 0] - 0.8 * rows[:, 1] + 0.5 * rows[:, 2] * rows[:, 3]
    labels = (rng.random(len(rows)) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 0},
        xgboost.DMatrix(rows, label=labels),
        num_boost_round=200,
    )
    model = folder / "model.onnx"
    model.write_bytes(to_onnx(booster, target_opset=15))
    schema = {"features": [{"name": f"f{i}", "kind": "numeric"} for i in range(FEATURES)]}
    (folder / "feature-schema.json").write_text(json.dumps(schema))
    return model, [round(float(value), 4) for value in rows[0]]


def start(label: str, command: Callable[[int], list[str]]) -> Server:
    port = free_port()
    process = subprocess.Popen(
        command(port),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{label} server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as response:
                if response.status == 200:
                    return Server(label, url, process)
        except OSError:
            time.sleep(0.2)
    process.kill()
    sys.exit(f"{label} server not ready after 90 s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def check_same_answers(servers: list[Server], body: str) -> None:
    """Both servers must compute the same thing, or the comparison means nothing."""
    answers = {}
    for server in servers:
        request = urllib.request.Request(
            f"{server.url}/v2/models/{MODEL_NAME}/infer",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answers[server.label] = json.load(response)["outputs"][0]["data"][0]
    if max(answers.values()) - min(answers.values()) > 1e-6:
        sys.exit(f"the servers disagree on the same row: {answers}")


def load(wrk: str, script: Path, server: Server, concurrency: int, duration: int) -> Result:
    import psutil  # not at the top: see the imports

    process = psutil.Process(server.process.pid)
    url = f"{server.url}/v2/models/{MODEL_NAME}/infer"
    for seconds in (WARMUP_SECONDS, duration):
        cpu_before = sum(process.cpu_times()[:2])
        completed = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{concurrency}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    cpu_seconds = sum(process.cpu_times()[:2]) - cpu_before
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    stats = json.loads(line.removeprefix("RESULT "))
    return Result(
        label=server.label,
        concurrency=concurrency,
        throughput=stats["requests"] / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        failed=stats["failed"],
        cpu_us=cpu_seconds / max(stats["requests"], 1) * 1e6,
    )


def report(results: list[Result], levels: list[int]) -> None:
    """Medians over the rounds; the ratio is the median of each round's own ratio."""
    by_key: dict[tuple[str, int], list[Result]] = {}
    for result in results:
        by_key.setdefault((result.label, result.concurrency), []).append(result)
    median = {key: _median(slices) for key, slices in by_key.items()}
    print()
    print("| server | " + " | ".join(f"c={c} req/s, p50/p99 ms, CPU µs/req" for c in levels) + " |")
    print("|---|" + "---|" * len(levels))
    for label in dict.fromkeys(result.label for result in results):
        cells = [
            f"{r.throughput:,.0f}, {r.p50_ms:.2f}/{r.p99_ms:.2f}, {r.cpu_us:.0f}"
            for r in (median[(label, c)] for c in levels)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    failed = sum(result.failed for result in results)
    if failed:
        print(f"WARNING: {failed} requests failed")
    ours_1, plain_1 = median[("ours", levels[0])], median[("ours, no batching", levels[0])]
    print(
        f"batching at c={levels[0]}: {ours_1.throughput:,.0f} vs {plain_1.throughput:,.0f} "
        f"req/s without ({ours_1.throughput / plain_1.throughput - 1:+.1%})"
    )
    top = levels[-1]
    if ("kserve", top) in median:
        kserve = median[("kserve", top)]
        ours_top = median[("ours", top)]
        print(
            f"c={top}: ours / kserve "
            f"{statistics.median(_round_ratios(by_key, 'kserve', top)):.2f}x throughput, "
            f"p99 {ours_top.p99_ms:.2f} vs {kserve.p99_ms:.2f} ms"
        )
    rounds = _round_ratios(by_key, "no-op", top)
    ratio = statistics.median(rounds)
    ours, noop = median[("ours", top)], median[("no-op", top)]
    p99_ratio = ours.p99_ms / noop.p99_ms
    print(f"c={top}: ours / no-op per round: {', '.join(f'{r:.2f}' for r in rounds)}")
    print(
        f"c={top}: server CPU per request: ours {ours.cpu_us:.0f} µs, no-op {noop.cpu_us:.0f} µs "
        f"(ours / no-op {ours.cpu_us / noop.cpu_us:.2f}; the throughput target needs <= "
        f"{1 / TARGET_RATIO:.2f} when the server is CPU-bound)"
    )
    print(
        f"c={top}: ours / no-op {ratio:.2f}x throughput (target >= {TARGET_RATIO}: "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}), p99 {ours.p99_ms:.2f} vs "
        f"{noop.p99_ms:.2f} ms = {p99_ratio:.2f}x (target <= {TARGET_P99}: "
        f"{'met' if p99_ratio <= TARGET_P99 else 'MISSED'})"
    )
    print(f"ratio={ratio:.2f}")


def _median(slices: list[Result]) -> Result:
    return Result(
        label=slices[0].label,
        concurrency=slices[0].concurrency,
        throughput=statistics.median(r.throughput for r in slices),
        p50_ms=statistics.median(r.p50_ms for r in slices),
        p99_ms=statistics.median(r.p99_ms for r in slices),
        failed=sum(r.failed for r in slices),
        cpu_us=statistics.median(r.cpu_us for r in slices),
    )


def _round_ratios(
    by_key: dict[tuple[str, int], list[Result]], reference: str, level: int
) -> list[float]:
    """Ours / `reference` throughput in each round: slices measured seconds apart."""
    pairs = zip(by_key[("ours", level)], by_key[(reference, level)], strict=True)
    return [ours.throughput / other.throughput for ours, other in pairs]


def serve_noop(port: int) -> None:
    """The reference: the least a server on our stack does per request. It reads the whole
    body (more_body loop), parses the JSON with orjson as ours does, and answers a fixed
    body with the same headers ours sends."""
    import orjson
    import uvicorn

    async def app(scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        orjson.loads(body or b"{}")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(NOOP_RESPONSE)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": NOOP_RESPONSE})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        log_level="warning",
    )


def serve_with_kserve(model: Path, port: int) -> None:
    """The reference: KServe's ModelServer (FastAPI + uvicorn) around an onnxruntime
    session set up exactly as ours (one intra-op thread), with KServe's per-request
    latency logging and gRPC server off, so it runs at its best."""
    import logging

    import kserve
    import numpy as np
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse

    class OnnxModel(kserve.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(MODEL_NAME)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
            self.ready = True

        def predict(
            self, payload: InferRequest, headers: dict[str, str] | None = None
        ) -> InferResponse:
            rows = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
            (probabilities,) = self.session.run(["probabilities"], {"input": rows})
            output = InferOutput(name="probability", shape=[len(rows)], datatype="FP32")
            output.set_data_from_numpy(np.ascontiguousarray(probabilities[:, 1]), binary_data=False)
            return InferResponse(
                response_id=payload.id, model_name=self.name, infer_outputs=[output]
            )

    server = kserve.ModelServer(
        http_port=port, enable_grpc=False, enable_latency_logging=False, workers=1
    )
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.access", "kserve", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([OnnxModel()])


if __name__ == "__main__":
    main()
