"""One attempt of a pod template (container, script or containerSet), run as local processes.

The image is not used locally (images.py says what stands in for it): `command` + `args`
run on this machine after Argo's variables are substituted, in the pod's own filesystem
(filesystem.py: an isolated view, or remapped paths). The attempt downloads input artifacts,
runs the init containers one after another, then the main container (a script's `source`
is written to a file and passed as its last argument, as Argo's executor does) or the
containerSet's containers in their dependency order, streaming their output to the observer
and to `main.log`; then reads output parameters, `outputs.result` (the main container's
stdout) and `exitCode`, and uploads output artifacts and the log under the artifact
repository's keyFormat, like Argo's executor.
"""

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from steps.core.errors import MlpipeError
from steps.core.names import Env
from workflows.engine.artifacts import (
    ArtifactRef,
    download_input,
    join_key,
    upload_output,
    upload_to_key,
)
from workflows.engine.errors import ManifestError
from workflows.engine.filesystem import PodFiles, pod_files
from workflows.engine.images import entrypoint_of, host_command
from workflows.engine.manifest import declared_paths, pod_containers
from workflows.engine.model import Container, SetContainer, Template
from workflows.engine.naming import pod_name
from workflows.engine.probe import wait_ready
from workflows.engine.process import LocalProcess
from workflows.engine.result import NodePhase
from workflows.engine.retry import parse_count
from workflows.engine.runtime import Call, NodeRecord, Outcome, RunState, TaskError
from workflows.engine.variables import Scope, substitute

PROGRESS_POLL_SECONDS = 0.5
SMALL_LOG_BYTES = 8 * 1024 * 1024
"""Logs up to this size are archived with one PUT (no transfer-manager thread pool)."""
MAIN = "main"
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
    pod = pod_name(run.identity.name, node_name, template.name)
    prefix = run.key_prefix(pod)
    async with run.pod_slot(template.daemon):
        files = _pod_files(run, template, run.directory / pod, scope)
        record.pod_name = pod
        record.log_keys.append(join_key(prefix, files.log_file.name))
        record.log_path = files.log_file
        record.exit_code = None
        record.progress = None
        run.begin(record)
        address = run.pod_addresses.next()  # a new pod, a new IP: retries included
        attempt = _Attempt(run, template, files, record, prefix, pod, node_name, address)
        return await attempt.run(scope, artifacts)


def _pod_files(run: RunState, template: Template, folder: Path, scope: Scope) -> PodFiles:
    mounts: dict[str, str] = {}
    for _, container in pod_containers(template):
        for mount in container.volume_mounts:
            mounts[mount.mount_path] = mount.name
    if template.container_set is not None:
        for mount in template.container_set.volume_mounts:
            mounts[mount.mount_path] = mount.name
    private = [
        _try_substitute(path, scope) for _, path in declared_paths(template) if path is not None
    ]
    working = [c.working_dir for _, c in pod_containers(template) if c.working_dir]
    return pod_files(
        folder,
        run.filesystem,
        sorted(mounts.items()),
        private,
        working,
        run.ctx.shared_paths,
        run.plan.dns_config,
    )


def _try_substitute(path: str, scope: Scope) -> str:
    """A declared path as planned before the attempt's own variables exist (a path naming
    one of them is resolved later, inside the task's root folder)."""
    try:
        return substitute(path, scope, "path")
    except ManifestError:
        return path


class _Attempt:
    def __init__(
        self,
        run: RunState,
        template: Template,
        files: PodFiles,
        record: NodeRecord,
        prefix: str,
        pod: str,
        node_name: str,
        pod_ip: str,
    ) -> None:
        self.run_state = run
        self.template = template
        self.files = files
        self.record = record
        self.prefix = prefix
        self.pod = pod
        self.node_name = node_name
        self.pod_ip = pod_ip
        self.where = f"{record.path} ({template.name or 'inline'})"
        self.process: LocalProcess | None = None
        self.handed_over = False

    async def run(self, base: Scope, artifacts: Mapping[str, ArtifactRef]) -> Outcome:
        outcome = Outcome(NodePhase.ERROR, "not started")
        progress: asyncio.Task[None] | None = None
        try:
            scope = self._scope(base)
            await self._download(scope, artifacts)
            for init in self.template.init_containers:
                code = await self._run_to_end(init, scope)
                if code != 0:
                    return await self._failed(scope, code, f"init container {init.name}")
            progress = asyncio.create_task(self._watch_progress())
            if self.template.container_set is not None:
                outcome = await self._container_set(scope)
            else:
                main = self.template.pod_spec
                assert main is not None
                self.process = await self._start(main, scope)
                if self.template.daemon:
                    outcome = await self._until_ready(main, scope, progress)
                else:
                    outcome = await self._until_exit(scope)
        except (ManifestError, TaskError, MlpipeError) as error:
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
                    self.files.discard()
        return outcome

    # --- preparing -----------------------------------------------------------------------

    def _scope(self, base: Scope) -> Scope:
        """The template's own variables: declared paths (container-side), pod and node."""
        values = {"pod.name": self.pod, "node.name": self.node_name}
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
        local = self.files.host_path(path)
        if local is None:
            raise TaskError(f"{self.where}: {what} {path!r} is not under a volumeMount")
        return local

    def _command(self, container: Container, scope: Scope) -> list[str]:
        where = f"{self.where}: container"
        tokens = [*container.command, *container.args]
        if not container.command:
            tokens = [*(entrypoint_of(container.image) or ()), *container.args]
        argv = [self.files.token(substitute(token, scope, where)) for token in tokens]
        if container is self.template.script:
            source = substitute(self.template.script.source, scope, f"{self.where}: source")
            self.files.script_file.write_text(source)
            self.files.script_file.chmod(0o755)  # Argo's script file is executable too
            argv.append(self.files.script_path)
        return host_command(argv)

    def _environment(self, container: Container, scope: Scope) -> dict[str, str]:
        where = f"{self.where}: container"
        env = dict(self.run_state.ctx.env)
        # Piped Python buffers its output; unbuffered, the live view and log stay current.
        env.setdefault("PYTHONUNBUFFERED", "1")
        for variable in container.env:
            if variable.value is not None:
                value = substitute(variable.value, scope, f"{where}.env {variable.name}")
                env[variable.name] = self.files.token(value)
                continue
            assert variable.value_from is not None
            ref = variable.value_from.secret_key_ref
            if ref is None:  # a fieldRef: the model admits status.podIP only
                env[variable.name] = self.pod_ip
                continue
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
        env[Env.PROGRESS_FILE.value] = self.files.progress_env
        return env

    async def _start(self, container: Container, scope: Scope) -> LocalProcess:
        argv, cwd = self.files.launch(self._command(container, scope), container.working_dir)
        return await LocalProcess.start(
            argv,
            self._environment(container, scope),
            cwd,
            self.files.log_file,
            self._line,
            self.run_state.groups,
        )

    async def _run_to_end(self, container: Container, scope: Scope) -> int:
        process = await self._start(container, scope)
        code = await process.wait()
        self._check_view()
        return code

    def _check_view(self) -> None:
        problem = self.files.setup_error()
        if problem is not None:
            raise TaskError(f"{self.where}: {problem}")

    async def _download(self, scope: Scope, artifacts: Mapping[str, ArtifactRef]) -> None:
        for artifact in self.template.inputs.artifacts:
            local = self._local(str(artifact.path), scope, f"input artifact {artifact.name}")
            ref = artifacts.get(artifact.name)
            if ref is None:
                continue  # optional and not supplied
            await asyncio.to_thread(
                download_input, self.run_state.store, ref, local, self.files.scratch
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
        self._check_view()
        return await self._finished(scope, code, self.process.stdout)

    async def _finished(self, scope: Scope, code: int, stdout: str) -> Outcome:
        self.record.exit_code = code
        result = stdout.removesuffix("\n")
        if code != 0:
            return await self._failed(scope, code, "", result)
        parameters = self._read_parameters(scope)
        uploaded = await self._upload(scope)
        return Outcome(
            NodePhase.SUCCEEDED,
            parameters=parameters,
            artifacts=uploaded,
            exit_code=0,
            result=result,
        )

    async def _failed(self, scope: Scope, code: int, what: str, result: str = "") -> Outcome:
        self.record.exit_code = code
        detail = f": {self.record.last_line}" if self.record.last_line else ""
        # Like Argo's wait container, keep what a failed step did write (a failed gate's
        # report is the reason to look); what it did not write is simply absent.
        kept = await self._upload(scope, failed=True)
        prefix = f"{what} " if what else ""
        return Outcome(
            NodePhase.FAILED,
            f"{prefix}exit code {code}{detail}",
            artifacts=kept,
            exit_code=code,
            result=result,
        )

    async def _container_set(self, scope: Scope) -> Outcome:
        """The containers of a containerSet, each once its dependencies succeeded; the pod
        fails when any does. Outputs come from the container named `main`."""
        container_set = self.template.container_set
        assert container_set is not None
        pending = {member.name: member for member in container_set.containers}
        running: dict[asyncio.Task[int], SetContainer] = {}
        done: dict[str, int] = {}
        stdout: dict[str, str] = {}

        async def run_one(member: SetContainer) -> int:
            process = await self._start(member, scope)
            code = await process.wait()
            stdout[member.name] = process.stdout
            return code

        try:
            while pending or running:
                for name, member in list(pending.items()):
                    if all(done.get(dep) == 0 for dep in member.dependencies):
                        running[asyncio.create_task(run_one(member))] = member
                        del pending[name]
                if not running:
                    break  # a dependency failed: the rest never start
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    done[running.pop(task).name] = task.result()
        finally:
            for task in running:
                task.cancel()
        self._check_view()
        failed = [name for name, code in done.items() if code != 0]
        if failed or pending:
            code = done[failed[0]] if failed else 1
            return await self._failed(scope, code, f"container {failed[0] if failed else '?'}")
        return await self._finished(scope, done.get(MAIN, 0), stdout.get(MAIN, ""))

    def _deadline(self, scope: Scope) -> float | None:
        value = self.template.active_deadline_seconds
        if value is None:
            return None
        if isinstance(value, str):
            value = substitute(value, scope, f"{self.where}: activeDeadlineSeconds")
        return float(parse_count(value, f"{self.where}: activeDeadlineSeconds"))

    async def _until_ready(
        self, main: Container, scope: Scope, progress: "asyncio.Task[None]"
    ) -> Outcome:
        """A daemon is handed to the DAG once its readinessProbe passes; its
        activeDeadlineSeconds counts from its start, through readiness and beyond."""
        assert self.process is not None
        started = time.monotonic()
        deadline = self._deadline(scope)
        probe = main.readiness_probe
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
            problem = await asyncio.wait_for(
                wait_ready(probe, self.pod_ip, port, self.process.exited), deadline
            )
        except TimeoutError:
            problem = f"not ready within activeDeadlineSeconds={deadline:g}"
        if problem is None:
            self.handed_over = True
            daemon = Daemon(self, progress, deadline, started)
            return Outcome(NodePhase.DAEMONED, daemon=daemon, pod_ip=self.pod_ip)
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
            text = self.files.progress_file.read_text()
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
        store = self.run_state.store
        for artifact in self.template.outputs.artifacts:
            local = self._local(str(artifact.path), scope, f"output artifact {artifact.name}")
            if not local.exists():
                if artifact.optional or failed:
                    continue
                raise TaskError(
                    f"{self.where}: output artifact {artifact.name!r}: "
                    f"{artifact.path} was not written"
                )
            if artifact.s3 is not None:
                key = substitute(artifact.s3.key, scope, f"{self.where}: outputs.artifacts")
                uploaded[artifact.name] = await asyncio.to_thread(
                    upload_to_key, store, local, key, artifact.archive, self.files.scratch
                )
                continue
            uploaded[artifact.name] = await asyncio.to_thread(
                upload_output,
                store,
                local,
                self.prefix,
                artifact.name,
                artifact.archive,
                self.files.scratch,
            )
        return uploaded

    def archive_log(self) -> None:
        """Upload main.log in the background: nothing downstream waits for a log."""
        store, log, key = self.run_state.store, self.files.log_file, self.record.log_keys[-1]

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
        attempt.files.discard()
        if not self._stopping and self.on_exit is not None:
            self.on_exit(outcome.phase)
