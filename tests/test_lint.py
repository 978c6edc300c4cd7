"""`mlpipe lint`: every manifest the project writes lints clean; a user's manifests get one
line per problem (file, manifest, JSON path, reason), templateRefs resolved across files."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_install import mlpipe

ROOT = Path(__file__).resolve().parents[1]
DIGEST = "a" * 64


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def step(name: str = "step", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "inputs": {"parameters": [{"name": "p"}]},
        "container": {"image": "python:3.12", "args": ["{{inputs.parameters.p}}"]},
        **extra,
    }


def library() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "library"},
        "spec": {"templates": [step()]},
    }


def workflow(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "user-"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "dag": {"tasks": [task]}}]},
    }


REF_TASK = {
    "name": "a",
    "templateRef": {"name": "library", "template": "step"},
    "arguments": {"parameters": [{"name": "p", "value": "1"}]},
}


def test_every_manifest_the_project_writes_lints_clean(tmp_path: Path) -> None:
    """Compiled for both configs, installed, and rendered: schema, Argo's rules, references."""
    written = []
    for config in ("local", "cluster"):
        out = tmp_path / f"compiled-{config}"
        result = mlpipe("compile", "--config", f"config/{config}.yaml", "--out", str(out))
        assert result.returncode == 0, result.stderr
        written.append(out)
    for name, command in (
        ("installed", ["install"]),
        ("rendered", ["deploy", "render", "--digest", DIGEST, "--stable-digest", "b" * 64]),
    ):
        out = tmp_path / name
        result = mlpipe(*command, "--out", str(out), "--config", "config/cluster.yaml")
        assert result.returncode == 0, result.stderr
        written.append(out)
    result = mlpipe("lint", *map(str, written), "workflows/compiled")
    assert result.stdout == ""
    # 3 compiled manifests x 3 (two configs and the committed ones) + template and cron installed.
    assert result.stderr.strip() == "0 problem(s) in 11 manifest(s)"
    assert result.returncode == 0


def test_each_problem_is_one_line_with_file_path_and_reason(tmp_path: Path) -> None:
    manifest = workflow({**REF_TASK, "templateRef": {"name": "library", "template": "ghost"}})
    manifest["spec"]["templates"].append(step("orphan", outputs={"parameters": [{"name": "o"}]}))
    manifest["spec"]["templates"][1]["container"]["sidecarMagic"] = True
    file = write(tmp_path / "user.yaml", manifest)
    write(tmp_path / "library.yaml", library())
    result = mlpipe("lint", str(tmp_path))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    prefix = f"{file}: Workflow/user-: "
    assert lines == [
        prefix + "spec.templates[1].container: Additional properties are not allowed "
        "('sidecarMagic' was unexpected)",
        prefix + "spec.templates[0].dag.tasks[0].templateRef: template reference "
        "library.ghost not found",
        prefix + "spec.templates[1].outputs.parameters[0]: outputs.parameters.o does not have "
        "valueFrom or value specified",
    ]
    assert result.stderr.strip() == "3 problem(s) in 2 manifest(s)"


def test_template_refs_resolve_from_the_other_files_given(tmp_path: Path) -> None:
    """`argo lint --offline` cannot resolve a templateRef (argo#14603); here the other files
    given are the library, and the call is checked against the template it runs."""
    user = write(tmp_path / "user.yaml", workflow(REF_TASK))
    templates = write(tmp_path / "library.yaml", library())
    assert mlpipe("lint", str(user), str(templates)).returncode == 0
    alone = mlpipe("lint", str(user))
    assert alone.returncode == 1
    assert "template reference library.step not found" in alone.stdout
    unsupplied = write(tmp_path / "unsupplied.yaml", workflow({**REF_TASK, "arguments": {}}))
    result = mlpipe("lint", str(unsupplied), str(templates))
    assert result.returncode == 1
    assert "templates.step inputs.parameters.p had no value" in result.stdout


def test_an_argument_the_template_does_not_declare_is_reported(tmp_path: Path) -> None:
    """Argo drops an undeclared argument silently, so a typo runs with the default (argo#5173)."""
    typo = {**REF_TASK, "arguments": {"parameters": [{"name": "p", "value": "1"}]}}
    typo["arguments"]["parameters"].append({"name": "mesage", "value": "hi"})
    file = write(tmp_path / "user.yaml", workflow(typo), library())
    result = mlpipe("lint", str(file))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{file}: Workflow/user-: spec.templates[0].dag.tasks[0].arguments.parameters[1]: "
        "template 'step' has no input parameter 'mesage' (declared: p); Argo would drop it "
        "silently"
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file or directory"),
        ("kind: [unclosed", "cannot read YAML"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no Argo Workflow"),
    ],
)
def test_unreadable_input_exits_2_naming_it(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "input.yaml"
    if content is not None:
        path.write_text(content)
    result = mlpipe("lint", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr and reason in result.stderr
    assert result.stdout == ""
