"""Promotion as a transaction, under fault injection: the store, the canary process and the
deploy step itself are killed at each boundary of a promotion (steps/deploy/promotion.py).

Everything is real: a SeaweedFS server of the test's own (killed with SIGKILL and started
again on the same folder), a stable model server and a canary server (real processes), the
deploy running in a spawned process that SIGKILLs itself at the chosen boundary, and a client
hammering stable throughout. After each fault and its repair (inline, by `mlpipe deploy
status`, or by the next deploy) the served digest must equal the one stable.json names, no
canary may be left running, and the client must have seen no failed request.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import psutil
import pytest

from steps.core.errors import GateFailed, StorageError
from steps.core.model_registry import intent_key, read_stable
from steps.core.names import Env
from steps.core.specs import CanarySpec, DeploySpec
from steps.core.store import DEFAULT_REGION, ArtifactStore
from steps.deploy.local import CanaryState, LocalBackend, read_server
from steps.deploy.promotion import Phase, new_intent, read_intent, status
from steps.deploy.step import deploy
from steps.evaluate.expectation import ScoreExpectation
from tests.integration.deploy.test_canary import (
    Hammer,
    evaluated_against_stable,
    hammer,
    served_versions,
)
from tests.integration.deploy.test_deploy import NAME, serving_spec, train
from tests.support.datasets import churn_frame, write_dataset
from tests.support.killed_deploy import deploy_until
from tests.support.serving import ModelFiles
from workflows.s3server import EmbeddedS3

# Two short steps: the faults need a canary that runs, not a long one.
CANARY = CanarySpec(steps=[50, 100], hold_seconds=0.5, min_requests=5, latency_floor_seconds=0.05)
DEAD_STORE = "cannot reach S3 endpoint"


class Store:
    """The test's own SeaweedFS, which a test may kill and start again on the same folder
    (new ports, so a new ArtifactStore: the one a killed step held is gone with it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server = EmbeddedS3(folder)
        self.server.start()
        self.store = self._connect()
        self.store.ensure_bucket()

    def _connect(self) -> ArtifactStore:
        return ArtifactStore(
            self.server.endpoint, "promotion", self.server.access_key, self.server.secret_key
        )

    def kill(self) -> None:
        os.kill(self.server.pid, signal.SIGKILL)
        self.server.stop()  # reaps it and frees the folder's lock

    def restart(self) -> ArtifactStore:
        self.server = EmbeddedS3(self.folder)
        self.server.start()
        self.store = self._connect()
        return self.store

    def env(self) -> dict[str, str]:
        return {
            Env.S3_ENDPOINT.value: self.server.endpoint,
            Env.S3_BUCKET.value: self.store.bucket,
            Env.S3_REGION.value: DEFAULT_REGION,
            Env.ACCESS_KEY.value: self.server.access_key,
            Env.SECRET_KEY.value: self.server.secret_key,
        }


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[Store]:
    own = Store(tmp_path / "s3")
    yield own
    own.server.stop()


@pytest.fixture
def spec(tmp_path: Path) -> Iterator[DeploySpec]:
    with serving_spec(tmp_path, CANARY) as deploy_spec:
        yield deploy_spec


class Setup:
    """A stable model serving (first deploy done) and a second good model: each promotion
    offers the one not registered, so faults at every boundary run one after another on
    the same servers and store."""

    def __init__(self, s3: Store, spec: DeploySpec, tmp_path: Path) -> None:
        self.s3 = s3
        self.spec = spec
        self.folder = tmp_path
        self._evaluated: dict[tuple[str, str], ScoreExpectation] = {}
        self.dataset_uri = write_dataset(s3.store, churn_frame(2000, seed=11), shards=1)
        self.models = (
            train(s3.store, self.dataset_uri, tmp_path / "a", rows=1200),
            train(s3.store, self.dataset_uri, tmp_path / "b", rows=1200, rounds=13),
        )
        deploy(s3.store, *self.files(self.models[0]), NAME, spec)
        server = read_server(Path(spec.state_dir))
        assert server is not None
        self.base_url = server.base_url

    @property
    def stable(self) -> ModelFiles:
        registered = read_stable(self.s3.store, NAME)
        assert registered is not None
        return next(m for m in self.models if m.digest == registered.digest)

    @property
    def candidate(self) -> ModelFiles:
        return next(m for m in self.models if m is not self.stable)

    def files(self, model: ModelFiles) -> tuple[Path, str, Path, str]:
        return model.onnx, model.digest, model.bundle, self.dataset_uri

    def expected(self, candidate: ModelFiles) -> ScoreExpectation:
        """What evaluate records for `candidate` against the stable model (two pairs only,
        so each is evaluated once)."""
        pair = (candidate.digest, self.stable.digest)
        if pair not in self._evaluated:
            self._evaluated[pair] = evaluated_against_stable(
                self.s3.store, self.dataset_uri, candidate
            )
        return self._evaluated[pair]

    def promote(
        self,
        candidate: ModelFiles,
        on_phase: Callable[[Phase], None] | None = None,
        progress: Path | None = None,
    ) -> None:
        deploy(
            self.s3.store, *self.files(candidate), NAME, self.spec,
            on_phase=on_phase, progress_file=progress, expected=self.expected(candidate),
        )  # fmt: skip

    def backend(self) -> LocalBackend:
        return LocalBackend(self.spec, self.s3.store, NAME)

    def assert_consistent(self, expected: ModelFiles) -> None:
        """Served == stable.json == `expected`, no intent, no canary left running."""
        assert self.stable is expected
        assert served_versions(self.base_url) == [expected.digest]
        assert read_intent(self.s3.store, NAME) is None
        assert self.canaries() == 0
        assert not (Path(self.spec.state_dir) / f"canary-{NAME}.json").exists()

    def canaries(self) -> int:
        """Model servers of this test running besides stable (other tests on the machine
        serve models of the same digests: only files under this test's folder count)."""
        server = read_server(Path(self.spec.state_dir))
        count = 0
        for process in psutil.process_iter(["pid", "cmdline"]):
            arguments = process.info["cmdline"] or []
            if process.info["pid"] == (server.pid if server else None):
                continue
            ours = any(argument.startswith(str(self.folder)) for argument in arguments)
            count += ours and arguments[1:3] == ["-m", "serving"]
        return count


@pytest.fixture
def setup(s3: Store, spec: DeploySpec, tmp_path: Path) -> Setup:
    return Setup(s3, spec, tmp_path)


def traffic(setup: Setup) -> Hammer:
    """~100 requests a second to stable: enough to see any gap in service, and it leaves
    the two cores to the deploy and its servers."""
    return hammer(setup.s3.store, setup.dataset_uri, setup.base_url, interval=0.01)


def when_progress(path: Path, reached: str, then: Callable[[], None]) -> threading.Thread:
    """Run `then` once the deploy's progress file says `reached`: with two canary steps,
    "3/5" is after the first, while the canary runs and takes traffic."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if path.exists() and path.read_text() == reached:
                then()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# --- the store dies ------------------------------------------------------------------------


def test_the_store_dies_at_each_boundary_and_serving_follows_stable_json(setup: Setup) -> None:
    """Before the commit, traffic goes back to the old model; after it, the new one stays.
    Either way the intent outlives the outage and the first status after it clears it."""
    with traffic(setup).running() as client:
        for phase in (Phase.BEGUN, Phase.CANARY_PASSED, Phase.SWITCHED, Phase.COMMITTED):
            old, new = setup.stable, setup.candidate

            def kill_store(reached: Phase, phase: Phase = phase) -> None:
                if reached is phase:
                    setup.s3.kill()

            with pytest.raises(StorageError) as failed:
                setup.promote(new, kill_store)
            message = str(failed.value)
            assert DEAD_STORE in message and "stays for `mlpipe deploy status`" in message
            kept = new if phase is Phase.COMMITTED else old
            assert served_versions(setup.base_url) == [kept.digest], phase
            assert setup.canaries() == 0
            store = setup.s3.restart()
            assert read_intent(store, NAME) is not None, phase
            state = status(store, setup.backend(), NAME)
            assert state.repaired is not None and state.agrees, phase
            setup.assert_consistent(kept)
    assert client.failures == [] and client.ok > 100


# --- the canary process dies ---------------------------------------------------------------


def test_the_canary_process_dies_mid_canary_and_is_rolled_back(
    setup: Setup, tmp_path: Path
) -> None:
    progress = tmp_path / "progress"
    old, new = setup.stable, setup.candidate

    def kill_canary() -> None:
        record = Path(setup.spec.state_dir) / f"canary-{NAME}.json"
        os.kill(CanaryState.model_validate_json(record.read_text()).pid, signal.SIGKILL)

    watcher = when_progress(progress, "3/5", kill_canary)
    with traffic(setup).running() as client:
        with pytest.raises(GateFailed) as failed:
            setup.promote(new, progress=progress)
        watcher.join()
    assert "canary server at http://127.0.0.1:" in str(failed.value)
    assert "stopped answering" in str(failed.value)
    assert client.failures == [] and client.ok > 50
    setup.assert_consistent(old)


# --- the deploy step dies ------------------------------------------------------------------


def killed_deploy(
    setup: Setup, candidate: ModelFiles, phase: str, progress: Path
) -> multiprocessing.process.BaseProcess:
    """The deploy of `candidate` in a process of its own that dies by SIGKILL at `phase`."""
    onnx, digest, bundle, dataset_uri = setup.files(candidate)
    model = [str(onnx), digest, str(bundle), dataset_uri, str(progress)]
    expected = setup.expected(candidate).model_dump_json()
    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=deploy_until,
        args=(setup.s3.env(), setup.spec.model_dump_json(), model, expected, phase),
    )
    child.start()
    return child


def mlpipe_status(setup: Setup) -> subprocess.CompletedProcess[str]:
    settings = [
        f"deploy.state_dir={setup.spec.state_dir}",
        "storage.mode=external",
        f"storage.endpoint={setup.s3.server.endpoint}",
        f"storage.bucket={setup.s3.store.bucket}",
    ]
    command = [sys.executable, "-m", "workflows.cli", "deploy", "status"]
    command += [arg for setting in settings for arg in ("--set", setting)]
    env = {**os.environ, **setup.s3.env()}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_the_deploy_step_is_killed_at_each_boundary_and_the_leftover_is_repaired(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed before the commit, the old model serves again after the repair; killed after
    it, the new one. The repair is `mlpipe deploy status`, or the next deploy, which repairs
    first and then promotes its own candidate."""
    phases = ["begun", "canary", "canary-passed", "switched", "committed"]
    with traffic(setup).running() as client:
        for number, phase in enumerate(phases):
            old, new = setup.stable, setup.candidate
            progress = tmp_path / f"progress-{phase}"
            child = killed_deploy(setup, new, phase, progress)
            if phase == "canary":
                when_progress(progress, "3/5", partial(os.kill, child.pid or 0, signal.SIGKILL))
            child.join(timeout=180)
            assert child.exitcode == -signal.SIGKILL, phase
            intent = read_intent(setup.s3.store, NAME)
            assert intent is not None and intent.to_digest == new.digest, phase
            if phase in ("canary", "canary-passed"):
                assert setup.canaries() == 1, phase  # orphaned by the kill
            kept = new if phase == "committed" else old
            repaired = f"repaired the promotion {old.digest[:12]} -> {new.digest[:12]}"
            if number % 2 == 0:
                shown = mlpipe_status(setup)
                assert shown.returncode == 0, shown.stdout + shown.stderr
                assert (
                    repaired.replace(old.digest[:12], old.digest).replace(
                        new.digest[:12], new.digest
                    )
                    in shown.stdout
                )
                setup.assert_consistent(kept)
            else:
                capsys.readouterr()
                setup.promote(other(setup, kept))
                assert f"deploy: {repaired}" in capsys.readouterr().err, phase
                setup.assert_consistent(other(setup, kept))
    assert client.failures == [] and client.ok > 100


def other(setup: Setup, model: ModelFiles) -> ModelFiles:
    return next(m for m in setup.models if m is not model)


def test_a_promotion_whose_deploy_still_runs_here_is_not_repaired(
    store: ArtifactStore, spec: DeploySpec
) -> None:
    """Its deploy process alive on this machine, an intent is a promotion in progress: status
    leaves it alone; once the process is gone, the intent is a leftover and is repaired."""
    deploying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    intent = new_intent(NAME, None, "d" * 64, "local", "wf-1").model_copy(
        update={"pid": deploying.pid}
    )
    store.put_json(intent_key(NAME), intent.model_dump(mode="json"))
    backend = LocalBackend(spec, store, NAME)
    with pytest.raises(
        GateFailed, match=f"a deploy of {NAME} is in progress \\(pid {deploying.pid}"
    ):
        status(store, backend, NAME)
    assert read_intent(store, NAME) == intent
    deploying.kill()
    deploying.wait()
    state = status(store, backend, NAME)
    assert state.repaired == intent and state.agrees and state.served is None
    assert read_intent(store, NAME) is None
