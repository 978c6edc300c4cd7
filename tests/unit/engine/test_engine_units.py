"""The local engine's pure parts, and the checks that refuse a manifest before it runs."""

import asyncio
import copy
import http.server
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.probes import ready
from workflows.compiler import compile_manifests
from workflows.config import load_config
from workflows.engine import ManifestError, UnsupportedField, VariableError, check_workflow
from workflows.engine.expressions import (
    TaskResult,
    evaluate_depends,
    evaluate_when,
    failure_aware_tasks,
    parse_depends,
)
from workflows.engine.filesystem import (
    FilesystemMode,
    Mount,
    create_placeholders,
    inner_uses,
    plan_view,
    pod_files,
)
from workflows.engine.manifest import load_plan
from workflows.engine.model import Probe
from workflows.engine.naming import expanded_name, fnv32a, pod_name
from workflows.engine.result import NodePhase
from workflows.engine.retry import RetryPlan, parse_duration
from workflows.engine.variables import Scope, substitute

ROOT = Path(__file__).resolve().parents[3]
S, F, E = TaskResult.SUCCEEDED, TaskResult.FAILED, TaskResult.ERRORED


# --- names -------------------------------------------------------------------------------


def test_fnv32a_matches_argo_and_pod_names_follow_v2_naming() -> None:
    # Reference values from Argo's UI tests (ui/src/shared/pod-name.test.ts).
    assert fnv32a("hello") == 1335831723
    assert fnv32a("world") == 933488787
    assert pod_name("wf", "wf.train(0).worker(1:1)", "train-worker") == (
        f"wf-train-worker-{fnv32a('wf.train(0).worker(1:1)')}"
    )
    assert pod_name("wf", "wf", "main") == "wf"
    assert len(pod_name("w" * 300, "w.x", "t")) <= 253


def test_fanned_out_node_names_are_argos() -> None:
    assert expanded_name("worker", 1, "1") == "worker(1:1)"
    assert expanded_name("t", 0, {"name": "a", "group": "b"}) == "t(0:group:b,name:a)"
    assert expanded_name("t", 2, True) == "t(2:true)"
    # generateNodeName drops parentheses from the item and formats a list as Go does.
    assert expanded_name("B", 0, "a(b)") == "B(0:ab)"
    assert expanded_name("B", 1, [1, 2]) == "B(1:[1 2])"
    assert expanded_name("sleep", 10, [{"foo": "bar"}]) == 'sleep(10:[{"foo":"bar"}])'


# --- depends and when --------------------------------------------------------------------


def _results(**phases: frozenset[TaskResult]) -> Any:
    return lambda task: phases[task.replace("-", "_")]


def test_a_bare_depends_name_means_succeeded_skipped_or_daemoned() -> None:
    expression = parse_depends("a && b-1")
    succeeded = frozenset({S, TaskResult.COMPLETED})
    skipped = frozenset({TaskResult.SKIPPED})
    failed = frozenset({F, TaskResult.COMPLETED})
    assert evaluate_depends(expression, _results(a=succeeded, b_1=skipped))
    assert not evaluate_depends(expression, _results(a=succeeded, b_1=failed))


def test_depends_results_operators_and_parentheses() -> None:
    expression = parse_depends("(a.Failed || a.Errored) && !b.Succeeded")
    assert evaluate_depends(expression, _results(a=frozenset({E}), b=frozenset({F})))
    assert not evaluate_depends(expression, _results(a=frozenset({E}), b=frozenset({S})))
    assert not evaluate_depends(expression, _results(a=frozenset({S}), b=frozenset({F})))
    assert failure_aware_tasks(expression) == {"a", "b"}
    assert failure_aware_tasks(parse_depends("a && b.Succeeded")) == set()


@pytest.mark.parametrize(
    ("text", "problem"),
    [("a.Finished", "unknown result .Finished"), ("a &&", "expected a task"), ("(a", "missing")],
)
def test_bad_depends_is_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        parse_depends(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pass == pass", True),
        ("fail == pass", False),
        ("'a b' != \"a b\"", False),
        ("3 > 2.5", True),
        ("10 < 9", False),
        ("abc < abd", True),
        ("true && !(1 == 2)", True),
        ("yes == yes || 1 > 2", True),
        ("false", False),
        ("s3://b/k == s3://b/k", True),
    ],
)
def test_when_compares_like_govaluate(text: str, expected: bool) -> None:
    assert evaluate_when(text) is expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1 < abc", "cannot order"),
        ("hello", "expected true or false"),
        ("1 + 2", "unexpected '\\+'"),
    ],
)
def test_a_when_that_cannot_be_judged_is_an_error(text: str, problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        evaluate_when(text)


# --- variables, durations, workspace -----------------------------------------------------


def test_substitution_is_one_pass_and_names_unknown_variables() -> None:
    scope = Scope({"inputs.parameters.a": "{{inputs.parameters.b}}"})
    assert substitute("x={{ inputs.parameters.a }}", scope, "here") == "x={{inputs.parameters.b}}"
    with pytest.raises(VariableError, match=r"here: unknown variable \{\{inputs.parameters.b\}\}"):
        substitute("{{inputs.parameters.b}}", scope, "here")


def test_creation_timestamp_parts_for_key_formats() -> None:
    scope = Scope({}, created=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    text = "{{workflow.creationTimestamp.Y}}/{{workflow.creationTimestamp.m}}"
    assert substitute(text, scope, "key") == "2026/03"


def test_argo_durations_and_backoff() -> None:
    assert parse_duration("1m30s", "x") == 90
    assert parse_duration("500ms", "x") == 0.5
    assert parse_duration(7, "x") == 7
    with pytest.raises(ManifestError, match="not a duration"):
        parse_duration("soon", "x")
    plan = RetryPlan(limit=3, policy="OnFailure", duration=2, factor=3, max_duration=10)
    assert [plan.delay(n) for n in (1, 2, 3)] == [2, 6, 18]
    assert plan.within_budget(elapsed=1, delay=6) and not plan.within_budget(elapsed=5, delay=6)
    assert plan.retries(NodePhase.FAILED) and not plan.retries(NodePhase.ERROR)


def test_container_paths_are_remapped_into_the_task_workspace(tmp_path: Path) -> None:
    files = pod_files(
        tmp_path, FilesystemMode.REMAP, [("/tmp", "work"), ("/tmp/in", "inputs")], [], []
    )
    work, inputs = tmp_path / "volumes" / "work", tmp_path / "volumes" / "inputs"
    assert work.is_dir() and inputs.is_dir()
    assert files.token("/tmp/out/x.json") == str(work / "out/x.json")
    assert files.token("/tmp/in/model") == str(inputs / "model")  # the longer mount wins
    assert files.token("--out=/tmp/o") == f"--out={work / 'o'}"
    assert files.token("/tmpfile") == "/tmpfile"
    assert files.token("s3://bucket/tmp/x") == "s3://bucket/tmp/x"
    assert files.host_path("/etc/passwd") is None


def test_remapping_finds_mount_paths_it_cannot_rewrite() -> None:
    assert inner_uses("echo hi > /mnt/w/out.txt", ["/mnt/w"]) == ["/mnt/w"]
    assert inner_uses("/mnt/w/out.txt", ["/mnt/w"]) == []
    assert inner_uses("--out=/mnt/w/x", ["/mnt/w"]) == []
    assert inner_uses("cat /mnt/wide", ["/mnt/w"]) == []


def test_an_isolated_view_keeps_the_hosts_entries_beside_the_tasks_own(tmp_path: Path) -> None:
    """Adding `/mnt/vol` and `/mnt/out/x` shows a folder of the task's own at `/mnt` whose
    host entries are bound back; the host's `/mnt` itself is never written to."""
    host_mnt = sorted(os.listdir("/mnt"))
    volume = tmp_path / "vol"
    plan = plan_view(tmp_path / "root", [Mount("/mnt/vol", volume)], ["/mnt/out/x"], ["/work-dir"])
    targets = {target for _, target in plan.binds}
    assert "/mnt/vol" in targets and "/mnt" not in targets
    assert {f"/mnt/{entry}" for entry in host_mnt if entry != "vol"} <= targets
    assert "/proc" in targets and "/tmp" in targets  # the rest of the machine is visible
    assert plan.host_path("/mnt/vol/a") == volume / "a"
    assert plan.host_path("/mnt/out/x") == tmp_path / "root/mnt/out/x"
    assert plan.host_path("/result.txt") == tmp_path / "root/result.txt"
    create_placeholders(plan)
    assert (tmp_path / "root/work-dir").is_dir()
    assert not (tmp_path / "root/mnt/out").exists()  # made by the task, as in a container
    assert sorted(os.listdir("/mnt")) == host_mnt


# --- manifest checks ---------------------------------------------------------------------


def _workflow(*templates: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "unit-"},
        "spec": {
            "entrypoint": "main",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "templates": list(templates),
            **spec,
        },
    }


def _container(name: str = "step", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "container": {
            "image": "python:3.11",
            "command": ["python", "-c", "pass"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        },
        **extra,
    }


def _dag(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"name": "main", "dag": {"tasks": list(tasks)}}


def test_an_unknown_field_is_refused_with_its_full_path() -> None:
    manifest = _workflow(_dag({"name": "a", "template": "step"}), _container())
    manifest["spec"]["templates"][1]["container"]["lifecycle"] = {"preStop": {}}
    with pytest.raises(UnsupportedField) as caught:
        check_workflow(manifest, {})
    assert caught.value.path == "spec.templates[1].container.lifecycle"
    assert "Workflow/unit-" in str(caught.value)


@pytest.mark.parametrize(
    ("where", "field", "reason"),
    [
        ("template", "podSpecPatch", "pod spec"),
        ("spec", "hostNetwork", "host networking"),
        ("spec", "volumeClaimTemplates", "PersistentVolumeClaims"),
        ("template", "sidecars", "sidecars are extra containers"),
    ],
)
def test_refused_fields_say_why(where: str, field: str, reason: str) -> None:
    manifest = _workflow(_dag({"name": "a", "template": "step"}), _container())
    target = manifest["spec"] if where == "spec" else manifest["spec"]["templates"][1]
    target[field] = {}
    with pytest.raises(UnsupportedField, match=reason) as caught:
        check_workflow(manifest, {})
    assert caught.value.path.endswith(field)


def _env_from(source: dict[str, Any]) -> dict[str, Any]:
    step = _container()
    step["container"]["env"] = [{"name": "NODE", "valueFrom": source}]
    return _workflow(_dag({"name": "a", "template": "step"}), step)


def test_a_downward_api_field_other_than_the_pod_ip_is_refused_naming_it() -> None:
    check_workflow(_env_from({"fieldRef": {"fieldPath": "status.podIP"}}), {})
    with pytest.raises(UnsupportedField) as caught:
        check_workflow(_env_from({"fieldRef": {"fieldPath": "spec.nodeName"}}), {})
    assert caught.value.path == "spec.templates[1].container.env[0].valueFrom.fieldRef.fieldPath"
    assert "'spec.nodeName' is not implemented by the local engine" in caught.value.reason
    assert "'status.podIP'" in caught.value.reason
    with pytest.raises(ManifestError, match="needs exactly one of secretKeyRef or fieldRef"):
        check_workflow(_env_from({}), {})


def test_cluster_only_fields_are_accepted() -> None:
    step = _container(
        metadata={"labels": {"a": "b"}},
        securityContext={"runAsNonRoot": True},
        nodeSelector={"disk": "ssd"},
    )
    step["container"].update(imagePullPolicy="Always", resources={"limits": {"cpu": "1"}})
    manifest = _workflow(
        _dag({"name": "a", "template": "step"}),
        step,
        podGC={"strategy": "OnPodSuccess"},
        serviceAccountName="runner",
        artifactRepositoryRef={"configMap": "repos", "key": "default"},
        ttlStrategy={"secondsAfterCompletion": 60},
    )
    manifest["metadata"]["labels"] = {"app": "x"}
    check_workflow(manifest, {})


def _workflow_using(value: str, *, in_step: bool) -> dict[str, Any]:
    """A two-task DAG where `value` appears in a task argument or in the step's args."""
    step = _container(inputs={"parameters": [{"name": "p"}]})
    step["container"]["args"] = [value if in_step else "{{inputs.parameters.p}}"]
    argument = {"parameters": [{"name": "p", "value": "v" if in_step else value}]}
    later = {"parameters": [{"name": "p", "value": "x"}]}
    return _workflow(
        _dag(
            {"name": "a", "template": "step", "arguments": argument},
            {"name": "later", "template": "step", "depends": "a", "arguments": later},
        ),
        step,
        arguments={"parameters": [{"name": "known", "value": "1"}]},
    )


@pytest.mark.parametrize(
    ("value", "in_step", "problem"),
    [
        ("{{inputs.parameters.nope}}", True, r"known here: inputs.parameters.p"),
        ("{{workflow.parameters.nope}}", False, r"known here: .*workflow.parameters.known"),
        ("{{tasks.later.outputs.parameters.x}}", False, r"\{\{tasks.later.outputs"),
        ("{{steps.a.outputs.result}}", False, r"failed to resolve \{\{steps.a"),
    ],
)
def test_unknown_variables_are_refused_before_running(
    value: str, in_step: bool, problem: str
) -> None:
    with pytest.raises(ManifestError, match=problem):
        check_workflow(_workflow_using(value, in_step=in_step), {})


def _set_task(index: int, **fields: Any) -> Any:
    return lambda m: m["spec"]["templates"][0]["dag"]["tasks"][index].update(fields)


def _set_step(**fields: Any) -> Any:
    return lambda m: m["spec"]["templates"][1].update(fields)


def _set_container(**fields: Any) -> Any:
    return lambda m: m["spec"]["templates"][1]["container"].update(fields)


SECRET_ENV = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "nope"}}}]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_set_task(0, depends="ghost"), "depends on unknown task"),
        (_set_task(0, depends="b"), "dependency cycle a -> b -> a"),
        (_set_task(0, arguments={"artifacts": [{"name": "a"}]}), "needs one of from, s3 or raw"),
        (_set_step(retryStrategy={"retryPolicy": "Always"}), "retryStrategy.limit is required"),
        (_set_container(env=SECRET_ENV), "secret 's3' key 'nope' is not available"),
        (_set_container(command=[]), "command is required"),
        (lambda m: m["spec"].update(entrypoint="nowhere"), "no template 'nowhere'"),
    ],
)
def test_structural_problems_are_refused_before_running(change: Any, problem: str) -> None:
    manifest = _workflow(
        _dag({"name": "a", "template": "step"}, {"name": "b", "template": "step", "depends": "a"}),
        _container(),
    )
    change(manifest)
    with pytest.raises(ManifestError, match=problem):
        load_plan(manifest, {}, secrets={"s3": {"endpoint": "http://s3"}})


def test_workflow_template_ref_merges_arguments_and_resolves_template_refs() -> None:
    library = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "library"},
        "spec": {"templates": [_container("x")]},
    }
    training = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "training", "namespace": "ml"},
        "spec": {
            "entrypoint": "main",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "arguments": {"parameters": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]},
            "templates": [_dag({"name": "t", "templateRef": {"name": "library", "template": "x"}})],
        },
    }
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "run-"},
        "spec": {
            "workflowTemplateRef": {"name": "training"},
            "arguments": {"parameters": [{"name": "b", "value": "20"}]},
        },
    }
    plan = check_workflow(workflow, {"training": training, "library": library})
    assert dict(plan.arguments) == {"a": "1", "b": "20"}
    assert plan.namespace == "ml"
    assert ("library", "x") in plan.templates
    with pytest.raises(ManifestError, match=r'argoproj\.io "training" not found'):
        check_workflow(workflow, {"library": library})


def test_the_compiled_mlpipe_pipeline_is_accepted(tmp_path: Path) -> None:
    manifests = compile_manifests(load_config(ROOT / "config" / "local.yaml"))
    template = manifests.template
    secrets = {"mlpipe-s3": {"endpoint": "http://s3", "access-key": "a", "secret-key": "s"}}
    plan = load_plan(manifests.workflow, {template["metadata"]["name"]: template}, secrets)
    assert plan.entrypoint.template.dag is not None
    broken = copy.deepcopy(template)
    broken["spec"]["templates"][0]["container"]["sidecarMagic"] = True
    with pytest.raises(UnsupportedField, match=r"spec.templates\[0\].container.sidecarMagic"):
        load_plan(manifests.workflow, {template["metadata"]["name"]: broken}, secrets)


def test_readiness_probes_wait_for_http_and_tcp(tmp_path: Path) -> None:
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def check(probe: Probe) -> str | None:
        return asyncio.run(ready(probe, port))

    try:
        assert check(Probe(httpGet={"path": "/ready", "port": port})) is None
        assert check(Probe(tcpSocket={"port": port})) is None
        failing = Probe(
            httpGet={"path": "/busy", "port": port}, periodSeconds=1, failureThreshold=1
        )
        assert "did not pass within 1 s" in str(check(failing))
    finally:
        server.shutdown()
