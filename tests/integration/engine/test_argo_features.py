"""The local engine as an Argo executor for anyone's workflows: steps, scripts, results,
fan-out names, fail-fast, hooks, ConfigMaps, mutexes, expressions, each task's own
filesystem and its fallback, run for real against the embedded S3 server.

The tasks are shell and Python one-liners, as in Argo's own examples; timing assertions
compare the timestamps the engine recorded, never wall-clock thresholds.
"""

import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from steps.core.store import ArtifactStore
from workflows.engine import (
    EngineContext,
    ManifestError,
    NodePhase,
    RunResult,
    UnsupportedField,
    WorkflowPhase,
    run_workflow,
)
from workflows.engine.filesystem import FilesystemMode, isolation_unavailable, pod_files
from workflows.engine.naming import fnv32a, pod_name


def workflow(*templates: dict[str, Any], **spec: Any) -> dict[str, Any]:
    metadata = spec.pop("metadata", {})
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "argo-test-", **metadata},
        "spec": {"entrypoint": "main", "templates": list(templates), **spec},
    }


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "container": {"image": "alpine:3.23", "command": ["sh", "-c"], "args": [script]},
        **extra,
    }


def echo(name: str = "echo") -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"parameters": [{"name": "message"}]},
        "container": {"image": "busybox", "command": ["echo", "{{inputs.parameters.message}}"]},
    }


@pytest.fixture
def ctx(store: ArtifactStore, tmp_path: Path) -> EngineContext:
    return EngineContext(
        store=store,
        key_format="{{workflow.name}}/{{pod.name}}",
        workdir=tmp_path / "runs",
        parallelism=4,
        env=dict(os.environ),
        secrets={},
        stop_grace_seconds=2.0,
        config_maps={"simple-parameters": {"msg": "hello from a ConfigMap"}},
    )


def remapped(ctx: EngineContext) -> EngineContext:
    """The fallback, forced as a setting (as `engine.filesystem: remap` does)."""
    return EngineContext(**{**vars(ctx), "filesystem": FilesystemMode.REMAP})


def run(manifest: dict[str, Any], ctx: EngineContext, **templates: Any) -> RunResult:
    return run_workflow(manifest, templates, ctx)


def log_text(result: RunResult, store: ArtifactStore, path: str) -> str:
    key = result.node(path).log_key
    assert key is not None
    return store.get_bytes(key).decode()


ISOLATION = isolation_unavailable()
needs_isolation = pytest.mark.skipif(
    ISOLATION is not None, reason=f"no user namespaces here: {ISOLATION}"
)


# --- the three divergences the issue found ------------------------------------------------


@needs_isolation
def test_a_path_inside_a_shell_command_is_the_tasks_own(
    ctx: EngineContext, store: ArtifactStore
) -> None:
    """volumes-emptydir: `/mnt/w` used inside `sh -c` is the task's emptyDir, seen in its
    mount table; two tasks writing the same path each keep their own file; nothing is written
    to this machine's /mnt."""
    volume = {"name": "w", "emptyDir": {}}
    writer = sh(
        "writer",
        "grep -q ' /mnt/w ' /proc/mounts && echo {{inputs.parameters.text}} > /mnt/w/out.txt",
        inputs={"parameters": [{"name": "text"}]},
        outputs={"parameters": [{"name": "text", "valueFrom": {"path": "/mnt/w/out.txt"}}]},
    )
    writer["container"]["volumeMounts"] = [{"name": "w", "mountPath": "/mnt/w"}]
    tasks = [
        {
            "name": n,
            "template": "writer",
            "arguments": {"parameters": [{"name": "text", "value": n}]},
        }
        for n in ("first", "second")
    ]
    before = sorted(os.listdir("/mnt"))
    result = run(workflow({"name": "main", "dag": {"tasks": tasks}}, writer, volumes=[volume]), ctx)
    assert result.succeeded, result.message
    assert result.node("first").parameters == {"text": "first"}
    assert result.node("second").parameters == {"text": "second"}
    assert sorted(os.listdir("/mnt")) == before


def test_a_failed_branch_still_starts_the_dependants_of_branches_already_running(
    ctx: EngineContext,
) -> None:
    """dag-continue-on-fail: E fails while C is still running; Argo's controller still starts
    D (`B.Failed && C`) once C is done, omits G (`E && F`), and the workflow fails."""
    tasks = [
        {"name": "A", "template": "ok"},
        {"name": "B", "depends": "A", "template": "fail"},
        {"name": "C", "depends": "A", "template": "slow"},
        {"name": "D", "depends": "B.Failed && C", "template": "ok"},
        {"name": "E", "depends": "A", "template": "fail"},
        {"name": "F", "depends": "A", "template": "ok"},
        {"name": "G", "depends": "E && F", "template": "ok"},
    ]
    manifest = workflow(
        {"name": "main", "dag": {"tasks": tasks}},
        sh("ok", "echo ok"),
        sh("fail", "echo intentional failure; exit 1"),
        sh("slow", "sleep 2"),
    )
    result = run(manifest, ctx)
    assert result.phase is WorkflowPhase.FAILED
    phases = {name: result.node(name).phase for name in "ABCDEFG"}
    assert phases == {
        "A": NodePhase.SUCCEEDED,
        "B": NodePhase.FAILED,
        "C": NodePhase.SUCCEEDED,
        "D": NodePhase.SUCCEEDED,
        "E": NodePhase.FAILED,
        "F": NodePhase.SUCCEEDED,
        "G": NodePhase.OMITTED,
    }
    e_done, d_started = result.node("E").finished_at, result.node("D").started_at
    assert e_done is not None and d_started is not None and e_done < d_started
    assert "E failed: exit code 1" in result.message


def test_with_items_nodes_are_named_as_argo_names_them(
    ctx: EngineContext, store: ArtifactStore
) -> None:
    """withItems `a(b)` and `[1,2]`: nodes `B(0:ab)` and `B(1:[1 2])`, so pod names (and the
    keys of their logs) are the ones a cluster run gets."""
    tasks = [
        {
            "name": "B",
            "template": "echo",
            "arguments": {"parameters": [{"name": "message", "value": "{{item}}"}]},
            "withItems": ["a(b)", [1, 2]],
        }
    ]
    result = run(workflow({"name": "main", "dag": {"tasks": tasks}}, echo()), ctx)
    assert result.succeeded, result.message
    for path, printed in (("B(0:ab)", "a(b)"), ("B(1:[1 2])", "[1,2]")):
        node = result.node(path)
        assert node.pod_name == f"{result.name}-echo-{fnv32a(f'{result.name}.{path}')}"
        assert node.pod_name == pod_name(result.name, node.name, "echo")
        assert node.log_key == f"{result.name}/{node.pod_name}/main.log"
        assert log_text(result, store, path).strip() == printed


# --- steps, scripts, results ----------------------------------------------------------------


def test_steps_run_group_by_group_and_see_earlier_results(ctx: EngineContext) -> None:
    """A script's stdout is `outputs.result`; later groups read it, `when` skips, a fan-out's
    results aggregate into a JSON list another step fans out over."""
    steps = [
        [{"name": "flip", "template": "flip"}],
        [
            {
                "name": "heads",
                "template": "echo",
                "when": "{{steps.flip.outputs.result}} == heads",
                "arguments": {"parameters": [{"name": "message", "value": "it was heads"}]},
            },
            {
                "name": "tails",
                "template": "echo",
                "when": "{{steps.flip.outputs.result}} == tails",
                "arguments": {"parameters": [{"name": "message", "value": "it was tails"}]},
            },
        ],
        [
            {
                "name": "square",
                "template": "square",
                "withItems": [1, 2, 3],
                "arguments": {"parameters": [{"name": "n", "value": "{{item}}"}]},
            }
        ],
        [
            {
                "name": "show",
                "template": "echo",
                "withParam": "{{steps.square.outputs.result}}",
                "arguments": {"parameters": [{"name": "message", "value": "{{item}}"}]},
            }
        ],
    ]
    flip = {
        "name": "flip",
        "script": {
            "image": "python:alpine3.23",
            "command": ["python"],
            "source": "print('heads')\n",
        },
    }
    square = {
        "name": "square",
        "inputs": {"parameters": [{"name": "n"}]},
        "script": {
            "image": "alpine:3.23",
            "command": ["sh"],
            "source": "echo $(({{inputs.parameters.n}} * {{inputs.parameters.n}}))\n",
        },
    }
    result = run(workflow({"name": "main", "steps": steps}, flip, square, echo()), ctx)
    assert result.succeeded, result.message
    assert result.node("[0].flip").result == "heads"
    assert result.node("[1].heads").phase is NodePhase.SUCCEEDED
    assert result.node("[1].tails").phase is NodePhase.SKIPPED
    assert [result.node(f"[2].square({i}:{n})").result for i, n in enumerate((1, 2, 3))] == [
        "1",
        "4",
        "9",
    ]
    shown = sorted(node.path for node in result.nodes if node.path.startswith("[3].show("))
    assert shown == ["[3].show(0:1)", "[3].show(1:4)", "[3].show(2:9)"]


def test_a_failed_step_stops_later_groups_unless_it_continues_on(ctx: EngineContext) -> None:
    steps = [
        [{"name": "flaky", "template": "fail", "continueOn": {"failed": True}}],
        [
            {
                "name": "report",
                "template": "echo",
                "arguments": {
                    "parameters": [
                        {
                            "name": "message",
                            "value": "{{steps.flaky.status}} {{steps.flaky.exitCode}}",
                        }
                    ]
                },
            }
        ],
        [{"name": "hard", "template": "fail"}],
        [
            {
                "name": "never",
                "template": "echo",
                "arguments": {"parameters": [{"name": "message", "value": "x"}]},
            }
        ],
    ]
    manifest = workflow({"name": "main", "steps": steps}, sh("fail", "exit 3"), echo())
    result = run(manifest, ctx)
    assert result.phase is WorkflowPhase.FAILED
    assert result.node("[1].report").phase is NodePhase.SUCCEEDED
    assert result.node("[0].flaky").exit_code == 3
    assert "never" not in {node.path.rsplit(".", 1)[-1] for node in result.nodes}


def test_exit_hooks_run_after_their_step_with_its_outputs(
    ctx: EngineContext, store: ArtifactStore
) -> None:
    produce = sh(
        "produce",
        "echo -n hello > /tmp/out.txt",
        outputs={"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/out.txt"}}]},
    )
    hook = {
        "template": "echo",
        "arguments": {
            "parameters": [{"name": "message", "value": "{{steps.make.outputs.parameters.out}}"}]
        },
    }
    steps = [[{"name": "make", "template": "produce", "hooks": {"exit": hook}}]]
    result = run(workflow({"name": "main", "steps": steps}, produce, echo()), ctx)
    assert result.succeeded, result.message
    exit_node = result.node("[0].make.onExit")
    assert exit_node.phase is NodePhase.SUCCEEDED
    assert exit_node.started_at is not None and result.node("[0].make").finished_at is not None
    assert result.node("[0].make").finished_at <= exit_node.started_at
    assert log_text(result, store, "[0].make.onExit").strip() == "hello"


# --- globals, ConfigMaps, expressions, mutexes ----------------------------------------------


def test_workflow_variables_configmaps_and_expressions(ctx: EngineContext) -> None:
    report = sh(
        "report",
        "echo -n '{{workflow.labels.team}} {{workflow.annotations.owner}}' > /tmp/meta; "
        "echo -n '{{workflow.duration}}' > /tmp/duration; "
        "echo -n '{{inputs.parameters.message}}' > /tmp/message; "
        "echo -n '{{=jsonpath(workflow.parameters.config, \"$.a\")}}' > /tmp/a",
        inputs={
            "parameters": [
                {
                    "name": "message",
                    "valueFrom": {"configMapKeyRef": {"name": "simple-parameters", "key": "msg"}},
                }
            ]
        },
        outputs={
            "parameters": [
                {"name": n, "valueFrom": {"path": f"/tmp/{n}"}}
                for n in ("meta", "duration", "message", "a")
            ]
        },
    )
    manifest = workflow(
        report,
        entrypoint="report",
        metadata={"labels": {"team": "ml"}, "annotations": {"owner": "platform"}},
        arguments={"parameters": [{"name": "config", "value": '{"a": "1"}'}]},
    )
    result = run(manifest, ctx)
    assert result.succeeded, result.message
    outputs = result.node("report").parameters
    assert outputs["meta"] == "ml platform"
    assert outputs["message"] == "hello from a ConfigMap"
    assert outputs["a"] == "1"
    assert 0 < float(outputs["duration"]) < result.duration


def test_a_missing_configmap_key_is_refused_naming_it(ctx: EngineContext) -> None:
    manifest = workflow(
        echo(),
        entrypoint="echo",
        arguments={
            "parameters": [
                {
                    "name": "message",
                    "valueFrom": {"configMapKeyRef": {"name": "simple-parameters", "key": "nope"}},
                }
            ]
        },
    )
    with pytest.raises(ManifestError, match="ConfigMap 'simple-parameters' has no key 'nope'"):
        run(manifest, ctx)


def test_a_workflow_mutex_lets_one_run_hold_it_at_a_time(ctx: EngineContext) -> None:
    manifest = workflow(
        sh("nap", "sleep 1"),
        entrypoint="nap",
        synchronization={"mutexes": [{"name": "one-at-a-time"}]},
    )
    results: list[RunResult] = []
    threads = [threading.Thread(target=lambda: results.append(run(manifest, ctx))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted((r.node("nap") for r in results), key=lambda n: n.started_at)
    assert first.finished_at is not None and second.started_at is not None
    assert first.finished_at <= second.started_at


# --- what needs Kubernetes, and the fallback without namespaces ----------------------------


@pytest.mark.parametrize(
    ("template", "spec", "named"),
    [
        ({"resource": {"action": "create", "manifest": "kind: Pod"}}, {}, "resource templates"),
        (
            {
                "container": {"image": "busybox", "command": ["true"]},
                "sidecars": [{"name": "nginx", "image": "nginx"}],
            },
            {},
            "sidecars",
        ),
        (
            {"container": {"image": "busybox", "command": ["true"]}, "podSpecPatch": "{}"},
            {},
            "patches the pod spec",
        ),
        (
            {"container": {"image": "busybox", "command": ["true"]}},
            {"volumeClaimTemplates": [{"metadata": {"name": "w"}}]},
            "PersistentVolumeClaims",
        ),
    ],
)
def test_features_that_need_kubernetes_are_refused_by_name(
    ctx: EngineContext, template: dict[str, Any], spec: dict[str, Any], named: str
) -> None:
    manifest = workflow({"name": "main", **template}, **spec)
    with pytest.raises(UnsupportedField, match=named):
        run(manifest, ctx)
    assert not ctx.workdir.exists()


@needs_isolation
def test_a_process_that_outlives_its_task_keeps_its_view(
    ctx: EngineContext, tmp_path: Path
) -> None:
    """The local deploy backend's stable server outlives its deploy task. The shared folder
    bound into the task's view must stay bound for it after the task ends: a later run writes
    a model there and the server must read it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    server = (
        f"while [ ! -f {shared}/model ]; do sleep 0.05; done; cat {shared}/model > {shared}/loaded"
    )
    starter = sh(
        "starter",
        f"setsid sh -c 'echo $$ > {shared}/pid; {server}' </dev/null >/dev/null 2>&1 &"
        f" while [ ! -s {shared}/pid ]; do sleep 0.05; done",
    )
    isolated = EngineContext(**{**vars(ctx), "shared_paths": (shared,)})
    result = run(workflow(starter, entrypoint="starter"), isolated)
    assert result.succeeded, result.message
    pid = int((shared / "pid").read_text())
    try:
        (shared / "model").write_text("v2")
        deadline = time.monotonic() + 10
        while not (shared / "loaded").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (shared / "loaded").read_text() == "v2"
    finally:
        os.kill(pid, signal.SIGKILL)


def test_without_namespaces_our_kind_of_manifest_still_runs(ctx: EngineContext) -> None:
    """Paths under a volumeMount, given as arguments: remapping is enough."""
    step = {
        "name": "step",
        "container": {
            "image": "python:3.12",
            "command": [
                "python",
                "-c",
                "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text('ok')",
            ],
            "args": ["/tmp/out/value"],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp/out"}],
        },
        "outputs": {"parameters": [{"name": "value", "valueFrom": {"path": "/tmp/out/value"}}]},
    }
    manifest = workflow(step, entrypoint="step", volumes=[{"name": "tmp", "emptyDir": {}}])
    result = run(manifest, remapped(ctx))
    assert result.succeeded, result.message
    assert result.node("step").parameters == {"value": "ok"}


def test_without_namespaces_a_path_inside_a_script_is_refused_naming_why(
    ctx: EngineContext,
) -> None:
    writer = sh("writer", "echo hi > /mnt/w/out.txt")
    writer["container"]["volumeMounts"] = [{"name": "w", "mountPath": "/mnt/w"}]
    artifact = sh(
        "artifact", "echo hi > /tmp/x", outputs={"artifacts": [{"name": "x", "path": "/tmp/x"}]}
    )
    steps = [[{"name": "a", "template": "writer"}, {"name": "b", "template": "artifact"}]]
    manifest = workflow(
        {"name": "main", "steps": steps}, writer, artifact, volumes=[{"name": "w", "emptyDir": {}}]
    )
    with pytest.raises(ManifestError) as refused:
        run(manifest, remapped(ctx))
    message = str(refused.value)
    assert "remapping was asked for (filesystem: remap)" in message
    assert "uses /mnt/w inside its text" in message
    assert "'/tmp/x' is not under a volumeMount" in message
    assert not ctx.workdir.exists()


@needs_isolation
@pytest.mark.skipif(os.getuid() != 0, reason="switching to another user needs root")
def test_an_ordinary_user_gets_an_isolated_view() -> None:
    """The view needs no privilege: run as `nobody` (with the system's Python, which
    `nobody` may execute; the sandbox needs only the standard library), a task sees its own
    /mnt/w, is root only inside its namespace, and its file lands in the pod's folder."""
    system_python = Path("/usr/bin/python3")
    if not system_python.exists():
        pytest.skip("no /usr/bin/python3 for the unprivileged user")
    with tempfile.TemporaryDirectory() as folder:  # pytest's tmp_path is root's alone
        Path(folder).chmod(0o755)
        pod = Path(folder) / "pod"
        files = pod_files(pod, FilesystemMode.ISOLATED, [("/mnt/w", "w")], [], [])
        argv, _ = files.launch(["sh", "-c", "id -u; echo hi > /mnt/w/x; cat /mnt/w/x"], None)
        subprocess.run(["chown", "-R", "65534:65534", str(pod)], check=True)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        ran = subprocess.run(
            [*nobody, str(system_python), *argv[1:]], capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, ran.stderr + str(files.setup_error())
        assert ran.stdout.split() == ["0", "hi"]  # root inside its namespace only
        written = pod / "volumes" / "w" / "x"
        assert written.read_text() == "hi\n"
        assert written.stat().st_uid == 65534  # nobody outside it
