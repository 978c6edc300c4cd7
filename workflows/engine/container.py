"""One attempt of a container template, run as a local process in its own workspace.

The image is not used locally: `command` + `args` run on this machine after Argo's
variables are substituted and container paths are remapped into the task's workspace, and a
command named `python` (or `python3`, `python3.11`, ...) runs with this engine's
`sys.executable`, so steps use the project's virtualenv as they would use the image's
Python. The attempt downloads input artifacts, runs the process (streaming its output to
the observer and to `main.log`), then reads output parameters and uploads output artifacts
and the log under the artifact repository's keyFormat, like Argo's executor.
"""

import asyncio
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from steps.core.errors import StepError
from steps.core.names import Env
from workflows.engine.artifacts import ArtifactRef, download_input, join_key, upload_output
from workflows.engine.errors import ManifestError
from workflows.engine.model import Container, Template
from workflows.engine.naming import pod_name
from workflows.engine.probe import wait_ready
from workflows.engine.process import LocalProcess
from workflows.engine.result import NodePhase
from workflows.engine.retry import parse_count
from workflows.engine.runtime import Call, NodeRecord, Outcome, RunState, TaskError
from workflows.engine.variables import Scope, substitute
from workflows.engine.workspace import LOG_FILE, Workspace

PROGRESS_POLL_SECONDS = 0.5
SMALL_LOG_BYTES = 8 * 1024 * 1024
"""Logs up to this size are archived with one PUT (no transfer-manager thread pool)."""
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_PROGRESS = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


async def run_container(
    run: RunState,
    call: Call,
    scope: Scope,
    artifacts: Mapping[str, ArtifactRef],
    node_name: str,
    record: NodeRecord,
) -> Outcome:
    template = call.entry.template
    container = template.container
    assert container is not None
    pod = pod_name(run.identity.name, node_name, template.name)
    prefix = run.key_prefix(pod)
    async with run.pod_slot(template.daemon):
        workspace = Workspace.create(
            run.directory / pod, [(m.mount_path, m.name) for m in container.volume_mounts]
        )
        record.pod_name = pod
        record.log_keys.append(join_key(prefix, LOG_FILE))
        record.log_path = workspace.log_file
        record.exit_code = None
        record.progress = None
        run.begin(record)
        attempt = _Attempt(run, template, container, workspace, record, prefix, pod)
        return await attempt.run(scope, artifacts)


class _Attempt:
    def __init__(
        self,
        run: RunState,
        template: Template,
        container: Container,
        workspace: Workspace,
        record: NodeRecord,
        prefix: str,
        pod: str,
    ) -> None:
        self.run_state = run
        self.template = template
        self.container = container
        self.workspace = workspace
        self.record = record
        self.prefix = prefix
        self.pod = pod
        self.where = f"{record.path} ({template.name})"
        self.process: LocalProcess | None = None
        self.handed_over = False

    async def run(self, base: Scope, artifacts: Mapping[str, ArtifactRef]) -> Outcome:
        outcome = Outcome(NodePhase.ERROR, "not started")
        progress: asyncio.Task[None] | None = None
        try:
            scope = self._scope(base)
            argv, env = self._command(scope)
            await self._download(scope, artifacts)
            self.process = await LocalProcess.start(
                argv,
                env,
                self.workspace.root,
                self.workspace.log_file,
                self._line,
                self.run_state.groups,
            )
            progress = asyncio.create_task(self._watch_progress())
            if self.template.daemon:
                outcome = await self._until_ready(scope, progress)
            else:
                outcome = await self._until_exit(scope)
        except (ManifestError, TaskError, StepError) as error:
            outcome = Outcome(NodePhase.ERROR, str(error))
        except OSError as error:  # the command cannot start, a workspace file cannot be read
            outcome = Outcome(NodePhase.ERROR, f"{self.where}: {error}")
        finally:
            if not self.handed_over:
                if progress is not None:
                    progress.cancel()
                if self.process is not None:
                    # Cancelled (deadline, Ctrl-C) or failed mid-way: the group goes first.
                    if self.process.running:
                        self.process.kill()
                    self.record.exit_code = await self.process.wait()
                self._report_progress()
                self.archive_log()
                if outcome.phase is NodePhase.SUCCEEDED:
                    shutil.rmtree(self.workspace.volumes, ignore_errors=True)
        return outcome

    # --- preparing -----------------------------------------------------------------------

    def _scope(self, base: Scope) -> Scope:
        """The template's own variables: declared paths (container-side) and pod.name."""
        values = {"pod.name": self.pod}
        inputs, outputs = self.template.inputs, self.template.outputs
        for artifact in inputs.artifacts:
            values[f"inputs.artifacts.{artifact.name}.path"] = str(artifact.path)
        for output in outputs.artifacts:
            values[f"outputs.artifacts.{output.name}.path"] = str(output.path)
        for parameter in outputs.parameters:
            values[f"outputs.parameters.{parameter.name}.path"] = str(parameter.value_from.path)
        scope = base.child(values)
        return scope.child({name: substitute(v, scope, self.where) for name, v in values.items()})

    def _local(self, declared: str, scope: Scope, what: str) -> Path:
        path = substitute(declared, scope, f"{self.where}: {what}")
        local = self.workspace.path(path)
        if local is None:
            raise TaskError(f"{self.where}: {what} {path!r} is not under a volumeMount")
        return local

    def _command(self, scope: Scope) -> tuple[list[str], dict[str, str]]:
        where = f"{self.where}: container"
        tokens = [*self.container.command, *self.container.args]
        argv = [self.workspace.token(substitute(token, scope, where)) for token in tokens]
        if _PYTHON.fullmatch(Path(argv[0]).name):
            argv[0] = sys.executable
        env = dict(self.run_state.ctx.env)
        # Piped Python buffers its output; unbuffered, the live view and log stay current.
        env.setdefault("PYTHONUNBUFFERED", "1")
        for variable in self.container.env:
            if variable.value is not None:
                value = substitute(variable.value, scope, f"{where}.env {variable.name}")
                env[variable.name] = self.workspace.token(value)
                continue
            assert variable.value_from is not None
            ref = variable.value_from.secret_key_ref
            name = substitute(ref.name, scope, where)
            key = substitute(ref.key, scope, where)
            secret = self.run_state.ctx.secrets.get(name, {})
            if key in secret:
                env[variable.name] = secret[key]
            elif ref.optional:
                # The base environment must not leak a value the secret did not provide.
                env.pop(variable.name, None)
            else:
                raise TaskError(f"{where}.env {variable.name}: secret {name!r} has no key {key!r}")
        env[Env.PROGRESS_FILE.value] = str(self.workspace.progress_file)
        return argv, env

    async def _download(self, scope: Scope, artifacts: Mapping[str, ArtifactRef]) -> None:
        for artifact in self.template.inputs.artifacts:
            ref = artifacts.get(artifact.name)
            if ref is None:
                continue  # optional and not supplied
            local = self._local(str(artifact.path), scope, f"input artifact {artifact.name}")
            await asyncio.to_thread(
                download_input, self.run_state.store, ref, local, self.workspace.root
            )

    # --- running -------------------------------------------------------------------------

    async def _until_exit(self, scope: Scope) -> Outcome:
        assert self.process is not None
        deadline = self._deadline(scope)
        done, _ = await asyncio.wait({self.process.exited}, timeout=deadline)
        if not done:
            code = await self.process.stop(self.run_state.ctx.stop_grace_seconds)
            self.record.exit_code = code
            return Outcome(
                NodePhase.FAILED,
                f"template {self.template.name!r} activeDeadlineSeconds={deadline:g} exceeded",
                exit_code=code,
            )
        code = await self.process.wait()
        self.record.exit_code = code
        if code != 0:
            detail = f": {self.record.last_line}" if self.record.last_line else ""
            # Like Argo's wait container, keep what a failed step did write (a failed gate's
            # report is the reason to look); what it did not write is simply absent.
            kept = await self._upload(scope, failed=True)
            return Outcome(
                NodePhase.FAILED, f"exit code {code}{detail}", artifacts=kept, exit_code=code
            )
        parameters = self._read_parameters(scope)
        uploaded = await self._upload(scope)
        return Outcome(NodePhase.SUCCEEDED, parameters=parameters, artifacts=uploaded, exit_code=0)

    def _deadline(self, scope: Scope) -> float | None:
        value = self.template.active_deadline_seconds
        if value is None:
            return None
        if isinstance(value, str):
            value = substitute(value, scope, f"{self.where}: activeDeadlineSeconds")
        return float(parse_count(value, f"{self.where}: activeDeadlineSeconds"))

    async def _until_ready(self, scope: Scope, progress: "asyncio.Task[None]") -> Outcome:
        """A daemon is handed to the DAG once its readinessProbe passes; its
        activeDeadlineSeconds counts from its start, through readiness and beyond."""
        assert self.process is not None
        started = time.monotonic()
        deadline = self._deadline(scope)
        probe = self.container.readiness_probe
        port = 0
        if probe is not None:
            raw: int | str = 0
            if probe.tcp_socket is not None:
                raw = probe.tcp_socket.port
            elif probe.http_get is not None:
                raw = probe.http_get.port
            where = f"{self.where}: readinessProbe port"
            port = parse_count(
                substitute(raw, scope, where) if isinstance(raw, str) else raw, where
            )
        try:
            problem = await asyncio.wait_for(wait_ready(probe, port, self.process.exited), deadline)
        except TimeoutError:
            problem = f"not ready within activeDeadlineSeconds={deadline:g}"
        if problem is None:
            self.handed_over = True
            return Outcome(NodePhase.DAEMONED, daemon=Daemon(self, progress, deadline, started))
        code = await self.process.stop(self.run_state.ctx.stop_grace_seconds)
        return Outcome(NodePhase.FAILED, f"daemon {problem}", exit_code=code)

    def _line(self, line: str) -> None:
        self.record.last_line = line
        self.run_state.observer.log_line(self.record.path, line)

    async def _watch_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_POLL_SECONDS)
            self._report_progress()

    def _report_progress(self) -> None:
        try:
            text = self.workspace.progress_file.read_text()
        except OSError:
            return
        match = _PROGRESS.fullmatch(text)
        if match is None:
            return
        progress = (int(match.group(1)), int(match.group(2)))
        if progress != self.record.progress:
            self.record.progress = progress
            self.run_state.observer.node_progress(self.record.path, *progress)

    # --- outputs -------------------------------------------------------------------------

    def _read_parameters(self, scope: Scope) -> dict[str, str]:
        values: dict[str, str] = {}
        for parameter in self.template.outputs.parameters:
            source = parameter.value_from
            local = self._local(str(source.path), scope, f"output parameter {parameter.name}")
            try:
                text = local.read_text()
            except OSError as error:
                if source.default is None:
                    raise TaskError(
                        f"{self.where}: output parameter {parameter.name!r}: cannot read "
                        f"{source.path}: {error.strerror}"
                    ) from None
                text = source.default
            # Argo trims one trailing newline "for user convenience"; so do we.
            values[parameter.name] = text.removesuffix("\n")
        return values

    async def _upload(self, scope: Scope, failed: bool = False) -> dict[str, ArtifactRef]:
        uploaded: dict[str, ArtifactRef] = {}
        for artifact in self.template.outputs.artifacts:
            local = self._local(str(artifact.path), scope, f"output artifact {artifact.name}")
            if not local.exists():
                if artifact.optional or failed:
                    continue
                raise TaskError(
                    f"{self.where}: output artifact {artifact.name!r}: "
                    f"{artifact.path} was not written"
                )
            uploaded[artifact.name] = await asyncio.to_thread(
                upload_output,
                self.run_state.store,
                local,
                self.prefix,
                artifact.name,
                artifact.archive,
                self.workspace.root,
            )
        return uploaded

    def archive_log(self) -> None:
        """Upload main.log in the background: nothing downstream waits for a log."""
        store, log, key = self.run_state.store, self.workspace.log_file, self.record.log_keys[-1]

        def upload() -> None:
            if not log.exists():
                log.touch()
            if log.stat().st_size <= SMALL_LOG_BYTES:
                store.put_bytes(key, log.read_bytes())
            else:
                store.upload_file(log, key)

        self.run_state.background(asyncio.to_thread(upload), f"archiving {store.uri(key)}")


class Daemon:
    """A daemon task that passed its readiness probe; it runs until its DAG ends, or until
    `deadline` seconds (its activeDeadlineSeconds) after `started` (time.monotonic()), which
    fails it as in Argo."""

    def __init__(
        self,
        attempt: _Attempt,
        progress: "asyncio.Task[None]",
        deadline: float | None = None,
        started: float = 0.0,
    ) -> None:
        assert attempt.process is not None
        self._attempt = attempt
        self._process = attempt.process
        self._progress = progress
        self._stopping = False
        self._expired = False
        self._expiry: asyncio.Task[int] | None = None
        self.on_exit: Callable[[NodePhase], None] | None = None
        self._deadline = deadline
        self._timer: asyncio.TimerHandle | None = None
        if deadline is not None:
            remaining = max(deadline - (time.monotonic() - started), 0.0)
            self._timer = asyncio.get_running_loop().call_later(remaining, self._expire)
        self._watcher = asyncio.create_task(self._watch())

    def _expire(self) -> None:
        if self._process.running and not self._stopping:
            self._expired = True
            grace = self._attempt.run_state.ctx.stop_grace_seconds
            self._expiry = asyncio.create_task(self._process.stop(grace))

    async def stop(self) -> None:
        """Stop at the end of the enclosing DAG (SIGTERM, then SIGKILL after the grace)."""
        if self._process.running:
            self._stopping = True
            await self._process.stop(self._attempt.run_state.ctx.stop_grace_seconds)
        await self._watcher

    async def _watch(self) -> None:
        attempt = self._attempt
        try:
            code = await self._process.wait()
        finally:
            self._progress.cancel()
            if self._timer is not None:
                self._timer.cancel()
            attempt.archive_log()
        attempt.record.exit_code = code
        if self._stopping:
            outcome = Outcome(NodePhase.DAEMONED, "stopped when its DAG finished", exit_code=code)
        elif self._expired:
            message = f"daemon activeDeadlineSeconds={self._deadline:g} exceeded"
            outcome = Outcome(NodePhase.FAILED, message, exit_code=code)
        elif code == 0:
            outcome = Outcome(NodePhase.SUCCEEDED, exit_code=code)
        else:
            detail = f": {attempt.record.last_line}" if attempt.record.last_line else ""
            message = f"daemon exited with code {code}{detail}"
            outcome = Outcome(NodePhase.FAILED, message, exit_code=code)
        attempt.run_state.finish(attempt.record, outcome)
        shutil.rmtree(attempt.workspace.volumes, ignore_errors=True)
        if not self._stopping and self.on_exit is not None:
            self.on_exit(outcome.phase)
