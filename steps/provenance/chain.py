"""The provenance chain: find every statement behind a run or an artifact, show it, verify it.

A chain starts from the statements a run recorded (`runs/<workflow>/provenance/`) or from the
statements that produced an artifact digest, and follows each `resolvedDependencies` digest
to the statement that produced it (steps/core/attestation.py keeps a pointer per subject digest).
Several statements may have the same subject: the same dataset provenanced by two runs, or
an ONNX file that deploy copied into the registry. The producer chosen is one that made the
bytes rather than copied them, from the consumer's own workflow when there is one, else the
latest: a memoized step's outputs lead to the run that computed them.
Verifying re-downloads every stored subject and dependency and recomputes its SHA-256, checks
each statement against its content address and, with a public key, its DSSE signature; the
first mismatch stops it with a message naming the step, the artifact and both digests.

`python -m steps chain show|verify --run NAME` is what `mlpipe provenance show|verify` runs;
deploy calls `verify_chain(store, digest=...)` before it serves a model.
"""

import hashlib
import json
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from steps.core.attestation import (
    RUNS_PREFIX,
    STATEMENTS_PREFIX,
    SUBJECTS_PREFIX,
    Resource,
    load_public_key,
    open_envelope,
)
from steps.core.errors import BadInput, GateFailed, StorageError
from steps.core.harness import Outcome, StepContext
from steps.core.registry import ACTION, DIGEST, PUBLIC_KEY, RUN
from steps.core.store import ArtifactStore, file_sha256, parse_s3_uri

_SHORT = 12


@dataclass(frozen=True)
class Link:
    """One statement of the chain, as stored at `key`."""

    key: str
    step: str
    workflow: str | None
    engine: str
    started: str
    finished: str
    subjects: tuple[Resource, ...]
    dependencies: tuple[Resource, ...]
    parameters: dict[str, Any]
    internal: dict[str, Any]
    signed: bool


@dataclass
class Chain:
    """Statements in dependency order (producers before consumers) and what was verified."""

    root: str
    links: list[Link]
    sources: list[Resource] = field(default_factory=list)
    """Dependencies no statement produced: the user's data, a reference profile, ..."""
    verified: int = 0

    @property
    def signed(self) -> bool:
        return bool(self.links) and all(link.signed for link in self.links)


def load_chain(
    store: ArtifactStore,
    *,
    run: str | None = None,
    digest: str | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> Chain:
    """Every statement behind run `run` or artifact `digest` (exactly one of them).

    Each statement is checked against its content address and, with `public_key`, its
    signature while it is read; a bad one raises GateFailed naming it.
    """
    if (run is None) == (digest is None):
        raise BadInput("give a run name or an artifact digest, not both")
    if run is not None:
        root = f"run {run}"
        start = _pointers(store, f"{RUNS_PREFIX}/{run}/provenance/")
        if not start:
            raise BadInput(
                f"no provenance recorded for run {run!r} in bucket {store.bucket} "
                f"(nothing under {RUNS_PREFIX}/{run}/provenance/)"
            )
    else:
        root = f"artifact sha256:{digest}"
        start = _pointers(store, f"{SUBJECTS_PREFIX}/{digest}/")
        if not start:
            raise GateFailed(f"no provenance statement produced artifact sha256:{digest}")
    read: dict[str, Link] = {}

    def link_at(key: str) -> Link:
        if key not in read:
            read[key] = _read_link(store, key, public_key)
        return read[key]

    links: dict[str, Link] = {}
    queue = deque(start)
    produced: set[str] = set()
    consumed: dict[str, Resource] = {}
    while queue:
        key = queue.popleft()
        if key in links:
            continue
        link = links[key] = link_at(key)
        produced |= {s.digest for s in link.subjects}
        for dependency in link.dependencies:
            consumed.setdefault(dependency.digest, dependency)
            pointers = _pointers(store, f"{SUBJECTS_PREFIX}/{dependency.digest}/")
            candidates = [link_at(k) for k in pointers if k != key]
            chosen = _producer(dependency.digest, link, candidates)
            if chosen is not None:
                queue.append(chosen.key)
    ordered = _in_dependency_order(list(links.values()))
    sources = [r for d, r in consumed.items() if d not in produced]
    return Chain(root=root, links=ordered, sources=sources)


def producers(
    store: ArtifactStore, digest: str, public_key: Ed25519PublicKey | None = None
) -> list[Link]:
    """The statements that made artifact `digest` (not those that copied it, like deploy's
    copy into the registry), each checked against its content address; [] when none did."""
    links = [
        _read_link(store, key, public_key)
        for key in _pointers(store, f"{SUBJECTS_PREFIX}/{digest}/")
    ]
    return [link for link in links if digest not in {d.digest for d in link.dependencies}]


def _producer(digest: str, consumer: Link, candidates: list[Link]) -> Link | None:
    """The statement that made `digest`: not a copy, the consumer's run first, else latest."""
    originals = [c for c in candidates if digest not in {d.digest for d in c.dependencies}]
    pool = originals or candidates
    same_run = [c for c in pool if c.workflow == consumer.workflow and c.workflow is not None]
    return max(same_run or pool, key=lambda c: (c.finished, c.key), default=None)


def verify_chain(
    store: ArtifactStore,
    *,
    run: str | None = None,
    digest: str | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> Chain:
    """Load the chain and re-download every stored artifact in it, comparing digests.

    Raises GateFailed on the first mismatch, naming the step, the artifact and both digests.
    """
    chain = load_chain(store, run=run, digest=digest, public_key=public_key)
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mlpipe-verify-") as tmp:
        scratch = Path(tmp) / "object"
        for link, role, resource in _resources(chain):
            where = resource.uri or resource.name
            if where in seen:
                continue
            seen.add(where)
            found = _recompute(store, resource, scratch)
            if found is None:
                if role == "produced":
                    raise GateFailed(
                        f"provenance verify: {link.step} produced {resource.name} but its "
                        "statement records no location to re-download it from"
                    )
                continue  # a dependency outside the store: linked by digest only
            if found != resource.digest:
                raise GateFailed(
                    f"provenance verify: {resource.name} ({role} by {link.step}, {where}) was "
                    f"changed: the statement records sha256 {resource.digest}, the stored "
                    f"artifact has {found}"
                )
            chain.verified += 1
    return chain


def _resources(chain: Chain) -> Iterator[tuple[Link, str, Resource]]:
    for link in chain.links:
        for subject in link.subjects:
            yield link, "produced", subject
        for dependency in link.dependencies:
            yield link, "consumed", dependency


def _recompute(store: ArtifactStore, resource: Resource, scratch: Path) -> str | None:
    """The SHA-256 of the artifact's bytes as stored now; None when it has no location."""
    uri = resource.uri
    if uri is None:
        return None
    if uri.startswith("s3://"):
        bucket, key = parse_s3_uri(uri)
        if bucket != store.bucket:
            return None
        try:
            # download_file checks the bytes against the digest recorded at upload, so an
            # object replaced behind the store's back fails here rather than passing.
            store.download_file(key, scratch)
        except StorageError as error:
            return f"unreadable ({error})"
        digest = file_sha256(scratch)
        scratch.unlink()
        return digest
    if uri.startswith("file://"):
        path = Path(urlparse(uri).path)
        return file_sha256(path) if path.is_file() else "missing"
    return None


def _pointers(store: ArtifactStore, prefix: str) -> list[str]:
    keys = []
    for key in store.list(prefix):
        pointer = store.get_json(key)
        if not isinstance(pointer, dict) or not isinstance(pointer.get("statement"), str):
            raise GateFailed(f"provenance pointer {store.uri(key)} is not a pointer object")
        keys.append(pointer["statement"])
    return keys


def _read_link(store: ArtifactStore, key: str, public_key: Ed25519PublicKey | None) -> Link:
    if not key.startswith(f"{STATEMENTS_PREFIX}/"):
        raise GateFailed(f"provenance pointer names {key!r}, not a stored statement")
    try:
        data = store.get_bytes(key)
    except StorageError as error:
        raise GateFailed(f"provenance statement {store.uri(key)} cannot be read: {error}") from None
    address = key.removeprefix(f"{STATEMENTS_PREFIX}/").removesuffix(".json")
    if hashlib.sha256(data).hexdigest() != address:
        raise GateFailed(
            f"provenance statement {store.uri(key)} was changed: its content no longer "
            "matches its address"
        )
    try:
        signed = json.loads(data)
        value = open_envelope(signed, public_key)
        predicate = value["predicate"]
        build, details = predicate["buildDefinition"], predicate["runDetails"]
        workflow = details["byproducts"][0]["annotations"]
        return Link(
            key=key,
            step=str(build["externalParameters"]["step"]),
            workflow=workflow.get("name"),
            engine=str(workflow.get("engine")),
            started=str(details["metadata"]["startedOn"]),
            finished=str(details["metadata"]["finishedOn"]),
            subjects=tuple(Resource.from_json(s) for s in value["subject"]),
            dependencies=tuple(Resource.from_json(d) for d in build["resolvedDependencies"]),
            parameters=dict(build["externalParameters"].get("parameters", {})),
            internal=dict(build.get("internalParameters", {})),
            signed=bool(signed.get("signatures")),
        )
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise GateFailed(f"provenance statement {store.uri(key)}: {error}") from None


def _in_dependency_order(links: list[Link]) -> list[Link]:
    """Producers before consumers; ties by start time, so the order reads like the run."""
    producers: dict[str, str] = {}
    for link in sorted(links, key=lambda item: item.started, reverse=True):
        # The earliest statement with a subject made it; later ones copied it (a deploy).
        producers.update({s.digest: link.key for s in link.subjects})
    by_key = {link.key: link for link in links}
    needs = {
        link.key: {producers[d.digest] for d in link.dependencies if d.digest in producers}
        - {link.key}
        for link in links
    }
    ordered: list[Link] = []
    done: set[str] = set()
    while len(ordered) < len(links):
        ready = [k for k in by_key if k not in done and needs[k] <= done]
        if not ready:  # a cycle cannot come from real runs; keep the rest in time order
            ready = [k for k in by_key if k not in done]
        ready.sort(key=lambda k: (by_key[k].started, by_key[k].step))
        ordered.append(by_key[ready[0]])
        done.add(ready[0])
    return ordered


def render_chain(chain: Chain) -> str:
    """The chain as text for `mlpipe provenance show`."""
    signing = "all signed" if chain.signed else "unsigned or partly signed"
    lines = [f"provenance chain of {chain.root}: {len(chain.links)} statements, {signing}"]
    for source in chain.sources:
        lines.append(f"  source {source.name} sha256:{source.digest[:_SHORT]}")
    for index, link in enumerate(chain.links, start=1):
        internal = link.internal
        lines.append(
            f"{index}. {link.step} (workflow {link.workflow or '-'}, {link.engine}, "
            f"{link.started} -> {link.finished})"
        )
        lines.append(
            f"   code {internal.get('code_version') or '-'}, package "
            f"{internal.get('package_version') or '-'}, config "
            f"{(internal.get('config_digest') or '-')[:_SHORT]}"
        )
        for dependency in link.dependencies:
            lines.append(f"   <- {dependency.name} sha256:{dependency.digest[:_SHORT]}")
        for subject in link.subjects:
            lines.append(f"   -> {subject.name} sha256:{subject.digest[:_SHORT]}")
    return "\n".join(lines)


def run(ctx: StepContext) -> Outcome:
    run, digest, key_file = ctx.optional(RUN), ctx.optional(DIGEST), ctx.optional(PUBLIC_KEY)
    public_key = None
    if key_file is not None:
        try:
            public_key = load_public_key(key_file.read_bytes())
        except OSError as error:
            raise BadInput(f"public key {key_file}: {error.strerror}") from error
    if ctx.get(ACTION) == "show":
        chain = load_chain(ctx.store, run=run, digest=digest, public_key=public_key)
        print(render_chain(chain))
        return Outcome()
    chain = verify_chain(ctx.store, run=run, digest=digest, public_key=public_key)
    checked = "signatures and digests" if public_key is not None else "digests"
    print(
        f"verified {chain.root}: {len(chain.links)} statements, {chain.verified} artifacts "
        f"re-downloaded, {checked} match"
    )
    return Outcome()
