"""The two images, checked without Docker (it cannot run here): hadolint on each Dockerfile,
the hardening facts read from the instructions, and the locks against the venv the tests
ran in and against what the server imports."""

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.paths import ROOT

IMAGES = ROOT / "images"
DOCKERFILES = {name: IMAGES / name / "Dockerfile" for name in ("steps", "serving")}
LOCKS = {name: IMAGES / name / "requirements.txt" for name in DOCKERFILES}
BUILD_LOCK = IMAGES / "build-requirements.txt"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuations joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_is_clean(image: str) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILES[image])], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_is_hardened(image: str) -> None:
    steps = instructions(DOCKERFILES[image])
    # The base image: an ARG whose default is pinned by digest, used by every stage.
    (base,) = [args for op, args in steps if op == "ARG" and args.startswith("BASE_IMAGE=")]
    assert DIGEST.search(base), f"BASE_IMAGE is not pinned by digest: {base}"
    froms = [args.split()[0] for op, args in steps if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: the final stage gets only what it copies"
    assert all(ref == "${BASE_IMAGE}" for ref in froms), froms

    final = final_stage(steps)
    users = [args for op, args in final if op == "USER"]
    assert users, "the final stage must drop root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 10001 and gid == "10001", users[-1]
    env = " ".join(args for op, args in final if op == "ENV")
    for setting in ("HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1", "XDG_CACHE_HOME=/tmp/"):
        assert setting in env, f"{setting} keeps a read-only root filesystem working"
    final_runs = " ".join(args for op, args in final if op == "RUN")
    for tool in ("pip ", "apt-get", "gcc", "build-essential", "curl", "wget"):
        assert tool not in final_runs, f"the final stage installs or runs {tool.strip()}"
    assert [args for op, args in final if op == "COPY"] == ["--from=build /opt/venv /opt/venv"]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_pip_installs_only_locked_hashed_files(image: str) -> None:
    runs = [args for op, args in instructions(DOCKERFILES[image]) if op == "RUN"]
    installs = [
        part.strip()
        for run in runs
        for part in run.split("&&")
        if re.search(r"pip\b.* install ", part)
    ]
    assert installs
    for install in installs:
        if "/wheels/" in install:  # the project's own wheel, built in the same stage
            assert "--no-deps" in install, install
            continue
        assert "--require-hashes" in install and " -r " in install, install
        assert "--only-binary=:all:" in install, f"no source builds, no compilers: {install}"
    for lock in (LOCKS[image], BUILD_LOCK):
        text = lock.read_text()
        assert f"images/{lock.relative_to(IMAGES)}" in DOCKERFILES[image].read_text()
        requirements = [line for line in text.splitlines() if PIN.match(line)]
        assert requirements and all(line.endswith("\\") for line in requirements), lock
        assert text.count("--hash=sha256:") >= len(requirements)


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    """The locked uv from the venv, offline: every check below reads only uv.lock."""
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": sys.prefix, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("uv")), *args, "--offline"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_lock_agrees_with_pyproject() -> None:
    """A dependency changed in pyproject.toml without `make lock` fails here, not in CI."""
    result = uv("lock", "--check")
    assert result.returncode == 0, f"uv.lock is stale: run `make lock`\n{result.stderr}"


def test_the_tested_venv_is_the_lock() -> None:
    """The tests run exactly the locked versions: nothing newer, nothing missing."""
    result = uv("sync", "--frozen", "--check")
    assert result.returncode == 0, f"the venv is not uv.lock: run `make venv`\n{result.stderr}"


@pytest.mark.parametrize(
    ("lock", "groups"),
    [
        (LOCKS["steps"], ["--no-default-groups"]),
        (LOCKS["serving"], ["--only-group", "serving"]),
        (BUILD_LOCK, ["--only-group", "build"]),
    ],
    ids=["steps", "serving", "build"],
)
def test_image_locks_are_exported_from_uv_lock(lock: Path, groups: list[str]) -> None:
    """The images install what the tests ran: each requirements file is `uv export` of the
    one lock (`make images-lock` rewrites them)."""
    exported = uv("export", "--frozen", "--quiet", *groups, "--no-emit-project")
    assert exported.returncode == 0, exported.stderr
    assert requirements(exported.stdout) == requirements(lock.read_text()), (
        f"{lock.relative_to(ROOT)} differs from uv.lock: run `make images-lock`"
    )


def requirements(text: str) -> list[str]:
    """The requirement lines of an exported lock, without its header comment."""
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_steps_lock_covers_every_project_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0] for spec in project["dependencies"]}
    locked = pins(LOCKS["steps"])
    missing = sorted(n for n in names if n.lower().replace("_", "-") not in locked)
    assert not missing, f"in pyproject.toml but not in the steps image: {missing}"


def test_serving_lock_covers_what_serving_imports() -> None:
    """`python -m serving` must find every library it imports in its slim image."""
    distributions = metadata.packages_distributions()
    imported = set()
    for module in (ROOT / "serving").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name in distributions and name != "serving"}
    assert {"onnxruntime", "uvicorn", "boto3", "prometheus_client"} <= third_party
    locked = pins(LOCKS["serving"])
    missing = {
        name: distributions[name]
        for name in third_party
        if not any(dist.lower().replace("_", "-") in locked for dist in distributions[name])
    }
    assert not missing, f"imported by serving/ but not in the serving image: {missing}"
    # uvicorn loads these by name (serving/__main__.py: loop="uvloop", http="httptools").
    assert {"uvloop", "httptools"} <= set(locked)


def test_serving_image_has_a_python_healthcheck_on_readiness() -> None:
    final = final_stage(instructions(DOCKERFILES["serving"]))
    (check,) = [args for op, args in final if op == "HEALTHCHECK"]
    assert 'CMD ["python", "-c"' in check and "/v2/health/ready" in check
    (entrypoint,) = [args for op, args in final if op == "ENTRYPOINT"]
    assert '"-m", "serving"' in entrypoint and '"--port", "8080"' in entrypoint
    assert "127.0.0.1:8080" in check, "the health check probes the port the server listens on"
    assert "HEALTHCHECK" not in DOCKERFILES["steps"].read_text(), "steps are jobs, not services"
