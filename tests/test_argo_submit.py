"""`mlpipe argo submit`: a user's own Argo Workflow YAML run locally, as a user runs it (a
subprocess with its own embedded S3 server); the exit code says how it ended."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents))
    return path


def submit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    settings = [
        "--set",
        f"engine.workdir={tmp_path / 'runs'}",
        "--set",
        f"storage.data_dir={tmp_path / 's3'}",
    ]
    return subprocess.run(
        [sys.executable, "-m", "workflows.cli", "argo", "submit", *args, *settings],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )


def hello(script: str = 'echo "{{workflow.parameters.message}}"', **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "hello-"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "message", "value": "hello world"}]},
            "templates": [
                {"name": "main", "container": {"image": "busybox", "command": ["sh", "-c", script]}}
            ],
            **spec,
        },
    }


def test_a_workflow_runs_with_parameters_from_the_command_line_and_a_file(tmp_path: Path) -> None:
    file = write(
        tmp_path / "hello.yaml",
        hello('echo "{{workflow.parameters.message}} {{workflow.parameters.extra}}"'),
    )
    parameters = tmp_path / "params.yaml"
    parameters.write_text("extra: from-a-file\n")
    result = submit(
        tmp_path, str(file), "-p", "message=hi there", "--parameter-file", str(parameters)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "main | hi there from-a-file" in result.stdout
    assert "Succeeded hello-" in result.stdout


def test_a_failing_workflow_exits_1_naming_the_failed_node(tmp_path: Path) -> None:
    file = write(tmp_path / "fail.yaml", hello("echo broken; exit 4"))
    result = submit(tmp_path, str(file))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "main failed: exit code 4: broken" in result.stdout


def test_templates_and_configmaps_come_from_the_templates_folder(tmp_path: Path) -> None:
    library = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "printer"},
        "spec": {
            "templates": [
                {
                    "name": "print",
                    "inputs": {
                        "parameters": [
                            {
                                "name": "message",
                                "valueFrom": {
                                    "configMapKeyRef": {"name": "settings", "key": "greeting"}
                                },
                            }
                        ]
                    },
                    "container": {
                        "image": "busybox",
                        "command": ["echo", "{{inputs.parameters.message}}"],
                    },
                }
            ]
        },
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"greeting": "from the library"},
    }
    write(tmp_path / "library" / "templates.yaml", library, config_map)
    workflow = hello()
    workflow["spec"]["templates"] = [
        {
            "name": "main",
            "steps": [[{"name": "call", "templateRef": {"name": "printer", "template": "print"}}]],
        }
    ]
    file = write(tmp_path / "uses-library.yaml", workflow)
    missing = submit(tmp_path, str(file), "--dry-run")
    assert missing.returncode == 2
    assert "templateRef: template reference printer.print not found" in missing.stderr
    result = submit(tmp_path, str(file), "--templates", str(tmp_path / "library"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[0].call | from the library" in result.stdout


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda w: w["spec"]["templates"][0].update(sidecars=[{"name": "db", "image": "x"}]),
            "templates[0].sidecars: sidecars are extra containers Kubernetes runs",
        ),
        (lambda w: w["spec"].update(entrypoint="nowhere"), "template name 'nowhere' undefined"),
    ],
)
def test_a_refused_workflow_exits_2_naming_the_field_or_rule_and_runs_nothing(
    tmp_path: Path, change: Any, named: str
) -> None:
    workflow = hello()
    change(workflow)
    file = write(tmp_path / "refused.yaml", workflow)
    result = submit(tmp_path, str(file))
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr
    assert not (tmp_path / "runs").exists()


def test_dry_run_checks_and_runs_nothing(tmp_path: Path) -> None:
    file = write(tmp_path / "hello.yaml", hello("touch /tmp/ran"))
    result = submit(tmp_path, str(file), "--dry-run", "--entrypoint", "main")
    assert result.returncode == 0, result.stderr
    assert f"{file}: accepted (nothing was run)" in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["-p", "no-equals-sign"], "-p 'no-equals-sign': expected NAME=VALUE"),
        (["--templates", "/no/such/folder"], "--templates /no/such/folder: not a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], problem: str) -> None:
    file = write(tmp_path / "hello.yaml", hello())
    result = submit(tmp_path, str(file), *args)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {problem}"


def test_a_file_that_is_not_yaml_is_bad_input(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("spec: [unclosed\n")
    result = submit(tmp_path, str(file))
    assert result.returncode == 2
    assert f"error: {file}: not valid YAML" in result.stderr
