"""The local engine running small purpose-built workflows against the real embedded S3.

Every task is a `python -c` snippet (no shell). Timing assertions compare the timestamps
the engine recorded, never wall-clock thresholds.
"""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from steps.core.store import ArtifactStore
from workflows.console import ConsoleView, locations_table, summary_table
from workflows.engine import (
    ArgoRuleError,
    EngineContext,
    ManifestError,
    NodePhase,
    NodeResult,
    Observer,
    RunResult,
    UnsupportedField,
    WorkflowPhase,
    run_workflow,
)
from workflows.engine.naming import fnv32a

MOUNT = "/work"
SECRETS = {"creds": {"token": "s3cr3t"}}

# --- building blocks ---------------------------------------------------------------------


def workflow(*templates: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "engine-test-", "labels": {"suite": "engine"}},
        "spec": {
            "entrypoint": "main",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "templates": list(templates),
            **spec,
        },
    }


def dag(name: str, *tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "dag": {"tasks": list(tasks)}, **extra}


def task(
    name: str,
    template: str | None,
    depends: str | None = None,
    params: Mapping[str, str] | None = None,
    artifacts: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if params:
        arguments["parameters"] = [{"name": k, "value": v} for k, v in params.items()]
    if artifacts:
        arguments["artifacts"] = [{"name": k, "from": v} for k, v in artifacts.items()]
    body: dict[str, Any] = {"name": name, "arguments": arguments}
    if template is not None:
        body["template"] = template
    if depends:
        body["depends"] = depends
    return {**body, **extra}


def py(
    name: str,
    code: str,
    *args: str,
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A container template running `code`; each output parameter is `/work/out/<name>`.

    The snippet finds its folders in $OUT and $IN: container paths in env values and
    arguments are remapped into the task's workspace, paths inside the code are not.
    """
    template: dict[str, Any] = {
        "name": name,
        "container": {
            "image": "python:3.11-slim",
            "command": ["python", "-c", textwrap.dedent(code)],
            "args": list(args),
            "env": [
                {"name": "OUT", "value": f"{MOUNT}/out"},
                {"name": "IN", "value": f"{MOUNT}/in"},
            ],
            "volumeMounts": [{"name": "work", "mountPath": MOUNT}],
            "resources": {"limits": {"cpu": "1"}},
        },
        **extra,
    }
    if inputs:
        template["inputs"] = {"parameters": [{"name": p} for p in inputs]}
    if outputs:
        template["outputs"] = {
            "parameters": [{"name": p, "valueFrom": {"path": f"{MOUNT}/out/{p}"}} for p in outputs]
        }
    return template


# Writes argv[1] (a value) to /work/out/<argv[2]> (an output parameter).
WRITE = """
import os, sys, pathlib
out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True, exist_ok=True)
(out / sys.argv[2]).write_text(sys.argv[1] + '\\n')
print('wrote', sys.argv[2], '=', sys.argv[1])
"""
SLEEP = "import sys, time; time.sleep(float(sys.argv[1]))"
PID_THEN_SLEEP = """
import os, subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
pathlib.Path(sys.argv[1]).write_text(f'{os.getpid()} {child.pid}')
time.sleep(60)
"""


@pytest.fixture
def ctx(store: ArtifactStore, s3_env: dict[str, str], tmp_path: Path) -> EngineContext:
    return EngineContext(
        store=store,
        key_format="{{workflow.name}}/{{pod.name}}",
        workdir=tmp_path / "runs",
        parallelism=4,
        env={**os.environ, **s3_env},
        secrets=SECRETS,
        stop_grace_seconds=2.0,
        # Tasks and the test talk through files under tmp_path, which a task's private
        # /tmp would otherwise hide.
        shared_paths=(tmp_path,),
    )


def run(manifest: dict[str, Any], ctx: EngineContext, **kwargs: Any) -> RunResult:
    return run_workflow(manifest, kwargs.pop("templates", {}), ctx, **kwargs)


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(*pids: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def before(first: NodeResult, second: NodeResult) -> bool:
    """`first` finished before `second` started, by the engine's own clock."""
    assert first.finished_at is not None and second.started_at is not None
    return first.finished_at <= second.started_at


# --- DAG order, parameters, substitution -------------------------------------------------


def test_a_diamond_runs_in_dependency_order_and_passes_parameters(ctx: EngineContext) -> None:
    echo = py(
        "echo", WRITE, "{{inputs.parameters.text}}", "value", inputs=("text",), outputs=("value",)
    )
    join = py(
        "join",
        """
        import os, sys, pathlib
        out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True)
        (out / 'value').write_text('+'.join(sys.argv[1:]) + '|' + os.environ['TOKEN'])
        """,
        "{{inputs.parameters.left}}",
        "{{inputs.parameters.right}}",
        "{{workflow.name}}",
        "{{pod.name}}",
        inputs=("left", "right"),
        outputs=("value",),
    )
    join["container"]["env"].append(
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}
    )
    manifest = workflow(
        dag(
            "main",
            task("a", "echo", params={"text": "{{workflow.parameters.greeting}}"}),
            task("b", "echo", "a", params={"text": "b-{{tasks.a.outputs.parameters.value}}"}),
            task("c", "echo", "a", params={"text": "c-{{tasks.a.status}}"}),
            task(
                "d",
                "join",
                "b && c",
                params={
                    "left": "{{tasks.b.outputs.parameters.value}}",
                    "right": "{{tasks.c.outputs.parameters.value}}",
                },
            ),
        ),
        echo,
        join,
        arguments={"parameters": [{"name": "greeting", "value": "hi"}]},
    )
    result = run(manifest, ctx)
    assert result.phase is WorkflowPhase.SUCCEEDED, result.message
    a, b, c, d = (result.node(name) for name in "abcd")
    assert before(a, b) and before(a, c) and before(b, d) and before(c, d)
    assert b.parameters == {"value": "b-hi"}  # one trailing newline trimmed, like Argo
    joined, token = d.parameters["value"].split("|")
    assert joined == f"b-hi+c-Succeeded+{result.name}+{d.pod_name}"
    assert token == "s3cr3t"
    assert result.name.startswith("engine-test-") and len(result.name) == len("engine-test-") + 5


def test_workflow_template_ref_and_template_ref_run_the_referenced_templates(
    ctx: EngineContext,
) -> None:
    library = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "library"},
        "spec": {
            "templates": [
                py(
                    "echo",
                    WRITE,
                    "{{inputs.parameters.text}}",
                    "value",
                    inputs=("text",),
                    outputs=("value",),
                )
            ]
        },
    }
    pipeline = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "pipeline"},
        "spec": {
            "entrypoint": "main",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "arguments": {"parameters": [{"name": "text", "value": "default"}]},
            "templates": [
                dag(
                    "main",
                    task(
                        "say",
                        None,
                        params={"text": "{{workflow.parameters.text}}"},
                        templateRef={"name": "library", "template": "echo"},
                    ),
                )
            ],
        },
    }
    submitted = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fixed-name"},
        "spec": {
            "workflowTemplateRef": {"name": "pipeline"},
            "arguments": {"parameters": [{"name": "text", "value": "override"}]},
        },
    }
    result = run(submitted, ctx, templates={"pipeline": pipeline, "library": library})
    assert result.succeeded, result.message
    assert result.name == "fixed-name"
    assert result.node("say").parameters == {"value": "override"}
    assert result.node("say").pod_name == f"fixed-name-echo-{fnv32a('fixed-name.say')}"
    with pytest.raises(ManifestError, match="a run named 'fixed-name' already exists"):
        run(submitted, ctx, templates={"pipeline": pipeline, "library": library})


def test_a_container_entrypoint_runs_as_the_workflow_pod(ctx: EngineContext) -> None:
    manifest = workflow(py("main", "print('alone')"))
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    (node,) = result.nodes
    assert (node.path, node.pod_name) == ("main", result.name)
    assert node.log_key == f"{result.name}/{result.name}/main.log"


# --- parallelism --------------------------------------------------------------------------


def test_independent_tasks_overlap_and_parallelism_one_serialises_them(ctx: EngineContext) -> None:
    sleepy = dag("main", task("x", "sleep"), task("y", "sleep"))
    sleeper = py("sleep", SLEEP, "0.4")
    concurrent = run(workflow(sleepy, sleeper), ctx)
    x, y = concurrent.node("x"), concurrent.node("y")
    assert not before(x, y) and not before(y, x), "independent tasks should overlap"

    serial = run(workflow(sleepy, sleeper, parallelism=1), ctx)
    x, y = serial.node("x"), serial.node("y")
    assert before(x, y) or before(y, x), "parallelism: 1 should run one task at a time"

    limited = dag("main", task("x", "sleep"), task("y", "sleep"), parallelism=1)
    serial_dag = run(workflow(limited, sleeper), ctx)
    x, y = serial_dag.node("x"), serial_dag.node("y")
    assert before(x, y) or before(y, x), "a DAG's parallelism: 1 should serialise its tasks"


SPAN = """
import os, pathlib, time
out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True)
start = time.time(); time.sleep(0.5)
(out / 'span').write_text(f'{start} {time.time()}')
"""


def test_a_template_mutex_lets_one_node_hold_it_at_a_time(ctx: EngineContext) -> None:
    """Argo's `synchronization.mutexes`: what stops a manual and a scheduled deploy from
    overlapping. Without the mutex the same two tasks overlap."""
    holder = py("hold", SPAN, outputs=("span",))
    both = dag("main", task("one", "hold"), task("two", "hold"))

    def spans(result: RunResult) -> list[tuple[float, ...]]:
        assert result.succeeded, result.message
        return sorted(
            tuple(map(float, result.node(name).parameters["span"].split()))
            for name in ("one", "two")
        )

    free = spans(run(workflow(both, holder), ctx))
    assert free[0][1] > free[1][0], "without a mutex the two tasks should overlap"
    holder["synchronization"] = {"mutexes": [{"name": "deploy-churn"}]}
    first, second = spans(run(workflow(both, holder), ctx))
    assert first[1] <= second[0]
    assert [p.name for p in (ctx.workdir / ".mutexes").iterdir()] == ["default.deploy-churn.lock"]


# --- fan-out -----------------------------------------------------------------------------


def test_fan_out_with_sequence_items_and_param_aggregates_outputs(ctx: EngineContext) -> None:
    square = py(
        "square",
        """
        import os, sys, pathlib
        n = int(sys.argv[1]); out = pathlib.Path(os.environ['OUT']); out.mkdir(parents=True)
        (out / 'n').write_text(str(n)); (out / 'sq').write_text(str(n * n))
        """,
        "{{inputs.parameters.n}}",
        inputs=("n",),
        outputs=("n", "sq"),
    )
    echo = py(
        "echo", WRITE, "{{inputs.parameters.text}}", "value", inputs=("text",), outputs=("value",)
    )
    listing = json.dumps([{"name": "ann", "size": 1}, {"name": "bo", "size": 2}])
    manifest = workflow(
        dag(
            "main",
            # Argo aggregates outputs of withItems/withParam fan-outs only (validate.go).
            task("sq", "square", params={"n": "{{item}}"}, withItems=[1, 2, 3]),
            task(
                "tick",
                "echo",
                params={"text": "{{item}}"},
                withSequence={"count": "{{workflow.parameters.n}}", "start": "1"},
            ),
            task("all", "echo", "sq", params={"text": "{{tasks.sq.outputs.parameters}}"}),
            task("column", "echo", "sq", params={"text": "{{tasks.sq.outputs.parameters.sq}}"}),
            task("words", "echo", params={"text": "{{item}}!"}, withItems=["x", "y"]),
            task(
                "countdown",
                "echo",
                params={"text": "{{item}}"},
                withSequence={"start": "3", "end": "1", "format": "n%02d"},
            ),
            task("make-list", "echo", params={"text": listing}),
            task(
                "people",
                "echo",
                "make-list",
                params={"text": "{{item.name}}={{item.size}}"},
                withParam="{{tasks.make-list.outputs.parameters.value}}",
            ),
        ),
        square,
        echo,
        arguments={"parameters": [{"name": "n", "value": 3}]},
    )
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    assert [result.node(f"sq({i}:{i + 1})").parameters["sq"] for i in range(3)] == ["1", "4", "9"]
    assert result.node("sq").kind.value == "TaskGroup"
    assert [result.node(f"tick({i}:{i + 1})").parameters["value"] for i in range(3)] == [
        "1",
        "2",
        "3",
    ]
    aggregated = json.loads(result.node("all").parameters["value"])
    assert aggregated == [{"n": "1", "sq": "1"}, {"n": "2", "sq": "4"}, {"n": "3", "sq": "9"}]
    assert json.loads(result.node("column").parameters["value"]) == ["1", "4", "9"]
    assert result.node("words(1:y)").parameters == {"value": "y!"}
    assert [n.path for n in result.nodes if n.path.startswith("countdown(")] == [
        "countdown(0:n03)",
        "countdown(1:n02)",
        "countdown(2:n01)",
    ]
    assert result.node("people(0:name:ann,size:1)").parameters == {"value": "ann=1"}
    assert result.node("people(1:name:bo,size:2)").parameters == {"value": "bo=2"}


# --- artifacts ---------------------------------------------------------------------------


def test_artifacts_land_at_key_format_keys_and_flow_downstream(
    ctx: EngineContext, store: ArtifactStore, tmp_path: Path
) -> None:
    seed = tmp_path / "seed.txt"
    seed.write_text("seeded")
    store.upload_file(seed, "inputs/seed.txt")
    produce = py(
        "produce",
        """
        import os, pathlib
        out = pathlib.Path(os.environ['OUT']); (out / 'bundle' / 'sub').mkdir(parents=True)
        (out / 'report.txt').write_text('report')
        (out / 'bundle' / 'a.txt').write_text('A')
        (out / 'bundle' / 'sub' / 'b.txt').write_text('B')
        print('produced')
        """,
    )
    plain = {"none": {}}
    produce["outputs"] = {
        "artifacts": [
            {"name": "report", "path": f"{MOUNT}/out/report.txt", "archive": plain},
            {"name": "bundle", "path": f"{MOUNT}/out/bundle", "archive": plain},
            {"name": "packed", "path": f"{MOUNT}/out/report.txt"},
            {"name": "packed-dir", "path": f"{MOUNT}/out/bundle"},
            {"name": "maybe", "path": f"{MOUNT}/out/absent", "optional": True},
        ]
    }
    consume = py(
        "consume",
        """
        import os, pathlib
        got = pathlib.Path(os.environ['IN'])
        values = [(got / 'report.txt').read_text(), (got / 'bundle' / 'sub' / 'b.txt').read_text(),
                  (got / 'packed.txt').read_text(), (got / 'packed-dir' / 'a.txt').read_text(),
                  (got / 'seed.txt').read_text()]
        out = pathlib.Path(os.environ['OUT']); out.mkdir()
        (out / 'seen').write_text(','.join(values))
        """,
        outputs=("seen",),
    )
    consume["inputs"] = {
        "artifacts": [
            {"name": "report", "path": f"{MOUNT}/in/report.txt"},
            {"name": "bundle", "path": f"{MOUNT}/in/bundle"},
            {"name": "packed", "path": f"{MOUNT}/in/packed.txt"},
            {"name": "packed-dir", "path": f"{MOUNT}/in/packed-dir"},
            {"name": "seed", "path": f"{MOUNT}/in/seed.txt", "s3": {"key": "inputs/seed.txt"}},
        ]
    }
    names = ("report", "bundle", "packed", "packed-dir")
    refs = {name: f"{{{{tasks.produce.outputs.artifacts.{name}}}}}" for name in names}
    steps = dag(
        "main",
        task("produce", "produce"),
        task("consume", "consume", "produce", artifacts=refs),
    )
    manifest = workflow(steps, produce, consume)
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    produced = result.node("produce")
    prefix = f"{result.name}/{result.name}-produce-{fnv32a(result.name + '.produce')}"
    assert produced.pod_name == prefix.split("/")[1]
    assert produced.artifacts == {
        "report": f"{prefix}/report.txt",
        "bundle": f"{prefix}/bundle",
        "packed": f"{prefix}/packed.tgz",
        "packed-dir": f"{prefix}/packed-dir.tgz",
    }
    stored = ("bundle/a.txt", "bundle/sub/b.txt", "main.log", "packed-dir.tgz", "packed.tgz")
    assert store.list(f"{prefix}/") == sorted(
        f"{prefix}/{name}" for name in (*stored, "report.txt")
    )
    assert store.get_bytes(f"{prefix}/report.txt") == b"report"
    assert store.get_bytes(f"{prefix}/main.log") == b"produced\n"
    assert produced.log_key == f"{prefix}/main.log"
    assert result.node("consume").parameters == {"seen": "report,B,report,A,seeded"}


# --- retries -----------------------------------------------------------------------------

FLAKY = """
import pathlib, sys
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text('failed once')
    sys.exit('first attempt fails on purpose')
print('second attempt works')
"""


def test_a_failed_attempt_is_retried_and_each_attempt_keeps_its_log(
    ctx: EngineContext, store: ArtifactStore, tmp_path: Path
) -> None:
    flaky = py("flaky", FLAKY, str(tmp_path / "marker"), retryStrategy={"limit": "2"})
    result = run(workflow(dag("main", task("try", "flaky")), flaky), ctx)
    assert result.succeeded, result.message
    node = result.node("try")
    assert node.phase is NodePhase.SUCCEEDED and node.attempts == 2
    first, second = node.log_keys
    assert first != second  # attempts are nodes try(0), try(1): distinct pods and keys
    assert b"first attempt fails on purpose" in store.get_bytes(first)
    assert store.get_bytes(second) == b"second attempt works\n"
    assert node.pod_name == f"{result.name}-flaky-{fnv32a(result.name + '.try(1)')}"


def test_a_retried_dag_template_reruns_the_whole_group(ctx: EngineContext, tmp_path: Path) -> None:
    count = tmp_path / "count"
    counter = py(
        "counter",
        "import sys; open(sys.argv[1], 'a').write('run\\n')",
        str(count),
    )
    flaky = py(
        "flaky",
        FLAKY + "import os; out = pathlib.Path(os.environ['OUT']); out.mkdir(); "
        "(out / 'value').write_text('from the group'); (out / 'model.txt').write_text('weights')",
        str(tmp_path / "marker"),
        outputs=("value",),
    )
    flaky["outputs"]["artifacts"] = [{"name": "model", "path": f"{MOUNT}/out/model.txt"}]
    read = py(
        "read",
        "import os, pathlib; out = pathlib.Path(os.environ['OUT']); out.mkdir(); "
        "(out / 'text').write_text(pathlib.Path(os.environ['IN'], 'model.txt').read_text())",
        outputs=("text",),
    )
    read["inputs"] = {"artifacts": [{"name": "model", "path": f"{MOUNT}/in/model.txt"}]}
    group = dag(
        "group",
        task("counter", "counter"),
        task("flaky", "flaky", "counter"),
        retryStrategy={"limit": 1, "retryPolicy": "Always", "backoff": {"duration": "0s"}},
        outputs={
            "parameters": [
                {
                    "name": "value",
                    "valueFrom": {"parameter": "{{tasks.flaky.outputs.parameters.value}}"},
                }
            ],
            "artifacts": [{"name": "model", "from": "{{tasks.flaky.outputs.artifacts.model}}"}],
        },
    )
    echo = py(
        "echo", WRITE, "{{inputs.parameters.text}}", "value", inputs=("text",), outputs=("value",)
    )
    manifest = workflow(
        dag(
            "main",
            task("train", "group"),
            task(
                "after",
                "echo",
                "train",
                params={"text": "{{tasks.train.outputs.parameters.value}}"},
            ),
            task(
                "read",
                "read",
                "train",
                artifacts={"model": "{{tasks.train.outputs.artifacts.model}}"},
            ),
        ),
        group,
        counter,
        flaky,
        echo,
        read,
    )
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    assert count.read_text() == "run\nrun\n"  # the tracker-like first task ran again
    assert result.node("train").attempts == 2
    assert result.node("train(0).flaky").phase is NodePhase.FAILED
    assert result.node("train(1).counter").phase is NodePhase.SUCCEEDED
    assert result.node("after").parameters == {"value": "from the group"}
    assert result.node("read").parameters == {"text": "weights"}
    assert result.node("train").artifacts == result.node("train(1).flaky").artifacts
    assert result.failed == () and result.message == ""  # the retry made the failure good


# --- daemons -----------------------------------------------------------------------------

POD_IP = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
"""The pod's own IP (Kubernetes' downward API): where a daemon listens, as on a cluster."""
SERVER = """
import os, socket, sys
server = socket.create_server((os.environ['POD_IP'], int(sys.argv[1])))
print('listening', flush=True)
while True:
    connection, _ = server.accept()
    connection.sendall(str(os.getpid()).encode()); connection.close()
"""
CLIENT = """
import os, pathlib, socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as connection:
    reply = connection.recv(100).decode()
out = pathlib.Path(os.environ['OUT']); out.mkdir(); (out / 'pid').write_text(reply)
"""


def test_a_daemon_serves_its_dependants_and_is_stopped_with_its_dag(ctx: EngineContext) -> None:
    port = str(free_port())
    server = py("server", SERVER, "{{inputs.parameters.port}}", inputs=("port",), daemon=True)
    server["container"]["env"].append(POD_IP)
    server["container"]["readinessProbe"] = {
        "tcpSocket": {"port": "{{inputs.parameters.port}}"},
        "periodSeconds": 1,
        "failureThreshold": 10,
    }
    client = py(
        "client", CLIENT, "{{inputs.parameters.host}}", port, inputs=("host",), outputs=("pid",)
    )
    manifest = workflow(
        dag(
            "main",
            task("server", "server", params={"port": port}),
            task("ask", "client", "server", params={"host": "{{tasks.server.ip}}"}),
            task("again", "client", "ask", params={"host": "{{tasks.server.ip}}"}),
        ),
        server,
        client,
    )
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    daemon = result.node("server")
    assert daemon.phase is NodePhase.DAEMONED
    pid = int(result.node("ask").parameters["pid"])
    assert result.node("again").parameters["pid"] == str(pid)
    assert not alive(pid), "the daemon must be stopped when its DAG ends"
    again = result.node("again")
    assert daemon.finished_at is not None and again.finished_at is not None
    assert daemon.finished_at >= again.finished_at


ADDRESS_SERVER = """
import os, pathlib, socket, sys
ip = os.environ['POD_IP']
seen = pathlib.Path(sys.argv[2])
first = not seen.exists()
with seen.open('a') as record:
    record.write(ip + '\\n')
if first and sys.argv[3] == 'fail-once':
    sys.exit('the first pod fails before it is ready')
server = socket.create_server((ip, int(sys.argv[1])))
while True:
    connection, _ = server.accept()
    connection.sendall(ip.encode()); connection.close()
"""
ASK_BOTH = """
import os, pathlib, socket, sys
out = pathlib.Path(os.environ['OUT']); out.mkdir()
for name, host in zip(('a', 'b'), sys.argv[2:]):
    with socket.create_connection((host, int(sys.argv[1])), timeout=5) as connection:
        (out / name).write_text(host + ' ' + connection.recv(100).decode())
"""


def test_each_pod_has_its_own_ip_and_a_retried_pod_a_new_one(
    ctx: EngineContext, tmp_path: Path
) -> None:
    """As on a cluster: `{{tasks.X.ip}}` is the daemon pod's own IP (its POD_IP), two daemons
    listen on one port at their own IPs, and a retried daemon, a new pod, gets a new IP."""
    port = str(free_port())
    server = py(
        "server",
        ADDRESS_SERVER,
        port,
        "{{inputs.parameters.seen}}",
        "{{inputs.parameters.mode}}",
        inputs=("seen", "mode"),
        daemon=True,
        retryStrategy={"limit": 1},
    )
    server["container"]["env"].append(POD_IP)
    server["container"]["readinessProbe"] = {"tcpSocket": {"port": int(port)}, "periodSeconds": 1}
    seen = {name: tmp_path / f"seen-{name}" for name in ("a", "b")}
    hosts = ("{{inputs.parameters.a}}", "{{inputs.parameters.b}}")
    ask = py("ask", ASK_BOTH, port, *hosts, inputs=("a", "b"), outputs=("a", "b"))
    manifest = workflow(
        dag(
            "main",
            task("a", "server", params={"seen": str(seen["a"]), "mode": "fail-once"}),
            task("b", "server", params={"seen": str(seen["b"]), "mode": "serve"}),
            task("ask", "ask", "a && b", params={"a": "{{tasks.a.ip}}", "b": "{{tasks.b.ip}}"}),
        ),
        server,
        ask,
    )
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    first_a, retried_a = seen["a"].read_text().split()
    (only_b,) = seen["b"].read_text().split()
    assert result.node("a").attempts == 2
    assert len({first_a, retried_a, only_b}) == 3, "every pod has its own IP"
    # Each daemon answered with its own POD_IP at the address `{{tasks.X.ip}}` gave.
    answers = result.node("ask").parameters
    assert answers == {"a": f"{retried_a} {retried_a}", "b": f"{only_b} {only_b}"}
    for address in (first_a, retried_a, only_b):
        assert address.startswith("127.") and not address.startswith("127.0.")


def test_a_daemon_that_exits_with_an_error_fails_its_dag(ctx: EngineContext) -> None:
    crashing = py("crash", "import sys, time; time.sleep(0.2); sys.exit(3)", daemon=True)
    manifest = workflow(
        dag("main", task("crash", "crash"), task("work", "sleep")),
        crashing,
        py("sleep", SLEEP, "1"),
    )
    result = run(manifest, ctx)
    assert result.phase is WorkflowPhase.FAILED
    assert result.node("crash").phase is NodePhase.FAILED
    assert result.node("crash").exit_code == 3
    assert "crash failed: daemon exited with code 3" in result.message


# --- when, failures, deadlines, onExit -----------------------------------------------------


def test_when_false_skips_the_task_and_its_dependants_still_run(ctx: EngineContext) -> None:
    echo = py("echo", WRITE, "ran", "value", outputs=("value",))
    manifest = workflow(
        dag(
            "main",
            task("gated", "echo", when="{{workflow.parameters.flag}} == yes"),
            task("counted", "echo", when="{{workflow.parameters.n}} > 2 && true"),
            task("after", "echo", "gated"),
            task("only-if-skipped", "echo", "gated.Skipped"),
            task("only-if-ran", "echo", "gated.Succeeded"),
        ),
        echo,
        arguments={"parameters": [{"name": "flag", "value": "no"}, {"name": "n", "value": "3"}]},
    )
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    assert result.node("gated").phase is NodePhase.SKIPPED
    assert result.node("gated").message == "when 'no == yes' evaluated false"
    assert result.node("counted").phase is NodePhase.SUCCEEDED
    assert result.node("after").phase is NodePhase.SUCCEEDED
    assert result.node("only-if-skipped").phase is NodePhase.SUCCEEDED
    assert result.node("only-if-ran").phase is NodePhase.OMITTED


def test_a_failure_stops_downstream_and_names_the_task_and_its_log(
    ctx: EngineContext, store: ArtifactStore, tmp_path: Path
) -> None:
    marker = tmp_path / "after-slow-ran"
    bad = py("bad", "import sys; print('working'); sys.exit('boom: 3 rows missing')")
    touch = py("touch", "import sys, pathlib; pathlib.Path(sys.argv[1]).touch()", str(marker))
    manifest = workflow(
        dag(
            "main",
            task("bad", "bad"),
            task("slow", "sleep"),
            task("after-bad", "touch", "bad"),
            task("after-slow", "touch", "slow"),
        ),
        bad,
        touch,
        py("sleep", SLEEP, "0.6"),
    )
    result = run(manifest, ctx)
    assert result.phase is WorkflowPhase.FAILED
    failed = result.node("bad")
    assert failed.exit_code == 1 and failed.phase is NodePhase.FAILED
    assert [node.path for node in result.failed] == ["bad"]
    assert failed.log_key is not None
    assert f"bad failed: exit code 1: boom: 3 rows missing (log: {result.uri(failed.log_key)})" in (
        result.message
    )
    assert store.get_bytes(failed.log_key) == b"working\nboom: 3 rows missing\n"
    assert result.node("slow").phase is NodePhase.SUCCEEDED  # a running sibling may finish
    assert result.node("after-bad").phase is NodePhase.OMITTED
    assert result.node("after-bad").started_at is None
    # As on Argo's controller, a failure does not keep a running branch's dependants from
    # starting (dag.go: the DAG stays Running while any node runs).
    assert result.node("after-slow").phase is NodePhase.SUCCEEDED
    assert marker.exists()


def test_a_command_that_cannot_start_is_an_error(ctx: EngineContext) -> None:
    missing = py("missing", "pass")
    missing["container"]["command"] = ["no-such-program-here"]
    result = run(workflow(dag("main", task("go", "missing")), missing), ctx)
    assert result.phase is WorkflowPhase.ERROR
    assert "go error:" in result.message and "no-such-program-here" in result.message


def test_deadlines_kill_the_sleeping_process_group(ctx: EngineContext, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    sleeper = py("sleeper", PID_THEN_SLEEP, str(pids))
    result = run(
        workflow(dag("main", task("nap", "sleeper")), sleeper, activeDeadlineSeconds=1), ctx
    )
    assert result.phase is WorkflowPhase.FAILED
    assert "workflow activeDeadlineSeconds=1 exceeded" in result.message
    assert result.node("nap").message == "workflow activeDeadlineSeconds=1 exceeded"
    assert wait_gone(*map(int, pids.read_text().split()))

    pids.unlink()
    bounded = py("sleeper", PID_THEN_SLEEP, str(pids), activeDeadlineSeconds="1")
    result = run(workflow(dag("main", task("nap", "sleeper")), bounded), ctx)
    assert result.phase is WorkflowPhase.FAILED
    assert result.node("nap").message == "template 'sleeper' activeDeadlineSeconds=1 exceeded"
    assert wait_gone(*map(int, pids.read_text().split()))


def test_on_exit_runs_with_the_workflow_status_and_failures(ctx: EngineContext) -> None:
    report = py(
        "report",
        """
        import json, os, sys, pathlib
        out = pathlib.Path(os.environ['OUT']); out.mkdir()
        (out / 'status').write_text(sys.argv[1])
        (out / 'failed').write_text(','.join(f['displayName'] for f in json.loads(sys.argv[2])))
        """,
        "{{workflow.status}}",
        "{{workflow.failures}}",
        outputs=("status", "failed"),
    )
    failing = workflow(
        dag("main", task("bad", "bad")), py("bad", "raise SystemExit(2)"), report, onExit="report"
    )
    result = run(failing, ctx)
    assert result.phase is WorkflowPhase.FAILED
    assert result.node("onExit").parameters == {"status": "Failed", "failed": "bad"}

    broken_exit = workflow(
        dag("main", task("fine", "fine")),
        py("fine", "pass"),
        py("bad", "raise SystemExit(2)"),
        onExit="bad",
    )
    result = run(broken_exit, ctx)
    assert result.node("fine").phase is NodePhase.SUCCEEDED
    assert result.phase is WorkflowPhase.FAILED
    assert "onExit failed: exit code 2" in result.message


# --- refused before anything runs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "text"),
    [
        (
            lambda m: m["spec"]["templates"][1]["container"].update(lifecycle={}),
            UnsupportedField,
            "spec.templates[1].container.lifecycle",
        ),
        (
            lambda m: m["spec"]["templates"][1]["container"]["args"].append(
                "{{inputs.parameters.x}}"
            ),
            ArgoRuleError,
            "spec.templates[1].container.args[1]: failed to resolve {{inputs.parameters.x}}",
        ),
    ],
)
def test_a_refused_manifest_runs_nothing(
    ctx: EngineContext,
    store: ArtifactStore,
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    error: type[Exception],
    text: str,
) -> None:
    marker = tmp_path / "ran"
    manifest = workflow(
        dag("main", task("first", "touch")),
        py("touch", "import sys, pathlib; pathlib.Path(sys.argv[1]).touch()", str(marker)),
    )
    change(manifest)
    with pytest.raises(error) as caught:
        run(manifest, ctx)
    assert text in str(caught.value)
    assert not marker.exists()
    assert store.list("") == []
    assert not ctx.workdir.exists()


# --- interruption and engine errors ---------------------------------------------------------

INTERRUPTED_RUN = """
import json, os, sys
from pathlib import Path
from steps.core.store import ArtifactStore
from workflows.engine import EngineContext, run_workflow
manifest, workdir = json.loads(sys.argv[1]), Path(sys.argv[2])
ctx = EngineContext(store=ArtifactStore.from_env(os.environ), key_format='{{pod.name}}',
                    workdir=workdir, parallelism=2, env=dict(os.environ), secrets={},
                    shared_paths=(workdir.parent,))
run_workflow(manifest, {}, ctx)
"""


def test_ctrl_c_kills_every_task_process_group(
    ctx: EngineContext, s3_env: dict[str, str], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    manifest = workflow(
        dag("main", task("nap", "sleeper")), py("sleeper", PID_THEN_SLEEP, str(pids))
    )
    engine = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN, json.dumps(manifest), str(tmp_path / "runs")],
        env={**os.environ, **s3_env},
    )
    try:
        deadline = time.monotonic() + 20
        while not pids.exists() or len(pids.read_text().split()) < 2:
            assert time.monotonic() < deadline, "the task never started"
            assert engine.poll() is None, "the engine exited early"
            time.sleep(0.05)
        engine.send_signal(signal.SIGINT)
        assert engine.wait(timeout=20) != 0
    finally:
        engine.kill()
    task_pid, child_pid = map(int, pids.read_text().split())
    assert wait_gone(task_pid, child_pid), "a task process outlived the interrupted engine"


class _Explodes(Observer):
    def log_line(self, path: str, line: str) -> None:
        if path == "talker":
            raise RuntimeError("observer broke")


def test_an_engine_error_kills_running_tasks_and_propagates(
    ctx: EngineContext, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    manifest = workflow(
        dag("main", task("nap", "sleeper"), task("talker", "talk")),
        py("sleeper", PID_THEN_SLEEP, str(pids)),
        py(
            "talk",
            "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists(): "
            "time.sleep(0.05)\nprint('hello')",
            str(pids),
        ),
    )
    with pytest.raises(RuntimeError, match="observer broke"):
        run(manifest, ctx, observer=_Explodes())
    assert wait_gone(*map(int, pids.read_text().split()))


# --- the console view ----------------------------------------------------------------------


def test_the_console_view_prefixes_log_lines_and_summarises_the_run(ctx: EngineContext) -> None:
    progress = py(
        "progress",
        """
        import os, pathlib
        target = pathlib.Path(os.environ['ARGO_PROGRESS_FILE'])
        for done in (1, 2):
            target.write_text(f'{done}/2')
        print('halfway there')
        out = pathlib.Path(os.environ['OUT']); out.mkdir(); (out / 'rows').write_text('42')
        """,
        outputs=("rows",),
    )
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    with ConsoleView(console) as view:
        result = run(workflow(dag("main", task("count", "progress")), progress), ctx, observer=view)
    assert result.succeeded, result.message
    output = buffer.getvalue()
    assert "count | halfway there" in output
    assert "count Succeeded in" in output
    assert result.node("count").progress == (2, 2)

    rendered = io.StringIO()
    report = Console(file=rendered, width=200)
    report.print(summary_table(result))
    report.print(locations_table(result))
    text = rendered.getvalue()
    assert "count" in text and "Succeeded" in text and "rows=42" in text
    log_key = result.node("count").log_key
    assert log_key is not None and result.uri(log_key) in text
