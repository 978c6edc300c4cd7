"""Promotion as a transaction: the served model and the registry's `stable.json` agree at every
instant, or `intent.json` records that they may not and how to make them agree.

For one model name, a deploy moves through these states (`Phase`):

    (staged)    the version's files are in its registry folder; nothing points at them
    BEGUN       intent.json written {from: the stable digest, to: the candidate}; stable
                serves `from` and no canary runs
      canary    the candidate takes a growing share of traffic (steps/deploy/canary.py)
    SWITCHED    the stable track serves `to` (the backend's `promote`)
    COMMITTED   stable.json points at `to`: the commit point
    (done)      intent.json removed

`stable.json` is the truth. Whatever goes wrong between BEGUN and the end, `repair` makes the
backend serve exactly the version `stable.json` names, with no canary and no traffic to one,
and only then removes `intent.json`. So a failure before the commit rolls traffic back to
`from`, and one after it (or a commit whose answer was lost) keeps `to`. When the store itself
is unreachable, stable.json cannot be read: the backend is put back on `from` (or on `to`
after a commit this process saw succeed) and intent.json stays for the next attempt.

A leftover intent.json (the deploy step was killed, or the store went away) is repaired by
the next deploy of that model before it does anything else, and by `mlpipe deploy status`.
An intent whose deploy process still runs on this machine is a promotion in progress and is
left alone. Deploys of one model must not run concurrently on several machines (the
retraining CronWorkflow forbids it): there, an intent cannot be told from a leftover.
"""

import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from steps.core.errors import GateFailed, MlpipeError, StorageError
from steps.core.model_registry import intent_key, read_stable, write_stable
from steps.core.processes import is_alive
from steps.core.records import Record
from steps.core.store import ArtifactStore
from steps.deploy.backend import CanaryBackend, ModelVersion


class Phase(StrEnum):
    BEGUN = "begun"
    CANARY_PASSED = "canary-passed"
    SWITCHED = "switched"
    COMMITTED = "committed"


PhaseHook = Callable[[Phase], None]


class Intent(Record):
    """`registry/<model>/intent.json`: a promotion in flight."""

    model_name: str
    from_digest: str | None
    """What stable served when the promotion began (None: a first deploy)."""
    to_digest: str
    backend: str
    started_at: str
    workflow: str | None = None
    host: str = ""
    pid: int = 0
    """The deploy process: while it runs on this host, its intent is no leftover."""

    def in_flight(self) -> bool:
        """The deploy that wrote this intent still runs here (a deploy on another machine,
        a pod, cannot be seen from here: concurrent deploys of one model are not allowed)."""
        here = self.host == socket.gethostname() and self.pid not in (0, os.getpid())
        return here and is_alive(self.pid)


class Transaction:
    """One promotion; see the module docstring. Use through `promotion()`."""

    def __init__(
        self, store: ArtifactStore, backend: CanaryBackend, intent: Intent, hook: PhaseHook
    ) -> None:
        self.store = store
        self.backend = backend
        self.intent = intent
        self.reached = hook
        """Called at each boundary: logs it (tests stop the store or kill the step there)."""
        self.committed = False

    def switch(self, version: ModelVersion) -> str:
        """The stable track serves the candidate; returns its base URL."""
        base_url = self.backend.promote(version)
        self.reached(Phase.SWITCHED)
        return base_url

    def commit(self, deployed_at: str) -> None:
        """Point stable.json at the candidate: the promotion has happened."""
        write_stable(self.store, self.intent.model_name, self.intent.to_digest, deployed_at)
        self.committed = True
        self.reached(Phase.COMMITTED)


@contextmanager
def promotion(
    store: ArtifactStore,
    backend: CanaryBackend,
    intent: Intent,
    on_phase: PhaseHook | None = None,
) -> Iterator[Transaction]:
    """Record the intent and put stable on `from`; on leaving, remove the intent, or on any
    failure repair (roll back or forward to stable.json) first and raise the failure."""
    store.put_json(intent_key(intent.model_name), intent.model_dump(mode="json"))
    transaction = Transaction(store, backend, intent, on_phase or log_phase)
    try:
        backend.restore(intent.from_digest)
        transaction.reached(Phase.BEGUN)
        yield transaction
    except BaseException as failure:
        fallback = intent.to_digest if transaction.committed else intent.from_digest
        try:
            repair(store, backend, intent, fallback)
        except MlpipeError as also:
            # The repair's failure decides the exit code: it is what is left to fix.
            also.args = (f"{failure}; then the repair failed: {also}",)
            raise also from failure
        raise
    try:
        store.delete(intent_key(intent.model_name))
    except StorageError as error:
        raise StorageError(
            f"promotion to {_short(intent.to_digest)} committed, but {error}: the intent stays "
            "for `mlpipe deploy status` or the next deploy to clear"
        ) from None


def log_phase(phase: Phase) -> None:
    """The default hook: one line per boundary in the step's log."""
    print(f"deploy: promotion {phase}", file=sys.stderr, flush=True)


def read_intent(store: ArtifactStore, model_name: str) -> Intent | None:
    key = intent_key(model_name)
    if not store.exists(key):
        return None
    return Intent.model_validate(store.get_json(key))


def repair(
    store: ArtifactStore, backend: CanaryBackend, intent: Intent, fallback: str | None
) -> str | None:
    """Serve what stable.json names (no canary), then remove the intent; returns that digest.

    With the store unreachable, serve `fallback` instead and raise: the intent stays, so the
    disagreement (if the commit did land) remains on record for the next repair.
    """
    try:
        stable = read_stable(store, intent.model_name)
    except StorageError as error:
        backend.restore(fallback)
        left = store.uri(intent_key(intent.model_name))
        raise StorageError(
            f"{error}; serving {_short(fallback)} meanwhile, and {left} stays for "
            "`mlpipe deploy status` or the next deploy to repair"
        ) from None
    target = stable.digest if stable is not None else None
    backend.restore(target)
    store.delete(intent_key(intent.model_name))
    return target


def repair_leftover(store: ArtifactStore, backend: CanaryBackend, model_name: str) -> Intent | None:
    """Repair the intent a previous deploy left behind, if any; returns it. One whose deploy
    still runs on this machine is a promotion in progress: GateFailed, nothing touched."""
    intent = read_intent(store, model_name)
    if intent is not None and intent.in_flight():
        raise GateFailed(
            f"a deploy of {model_name} is in progress (pid {intent.pid}, since "
            f"{intent.started_at}): {_short(intent.from_digest)} -> {_short(intent.to_digest)}"
        )
    if intent is not None:
        repaired = repair(store, backend, intent, intent.from_digest)
        print(
            f"deploy: repaired the promotion {_short(intent.from_digest)} -> "
            f"{_short(intent.to_digest)} left at {intent.started_at}: serving {_short(repaired)}",
            file=sys.stderr,
            flush=True,
        )
    return intent


@dataclass(frozen=True)
class Status:
    """A model's serving state against the registry, after any leftover was repaired."""

    registered: str | None
    """What stable.json names."""
    served: str | None
    """What the backend's stable track serves."""
    repaired: Intent | None
    """The leftover promotion that was repaired first, if there was one."""

    @property
    def agrees(self) -> bool:
        return self.registered == self.served


def status(store: ArtifactStore, backend: CanaryBackend, model_name: str) -> Status:
    """`mlpipe deploy status`: repair a leftover promotion, then compare."""
    repaired = repair_leftover(store, backend, model_name)
    stable = read_stable(store, model_name)
    registered = stable.digest if stable is not None else None
    return Status(registered, backend.served(), repaired)


def new_intent(
    model_name: str, stable: str | None, candidate: str, backend: str, workflow: str | None
) -> Intent:
    return Intent(
        model_name=model_name,
        from_digest=stable,
        to_digest=candidate,
        backend=backend,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        workflow=workflow,
        host=socket.gethostname(),
        pid=os.getpid(),
    )


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "no model"
