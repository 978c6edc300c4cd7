"""Artifacts between a task's workspace and the artifact repository, laid out like Argo.

An output artifact goes to `<keyFormat rendered>/<file name>`, where the file name is the
path's base name with `archive: {none: {}}` (a folder becomes one object per file under that
prefix) and `<artifact name>.tgz` otherwise (Argo's default archive, a gzipped tarball whose
single top-level entry is the path's base name). Inputs are fetched back the same way; an
explicit `s3.key` input is extracted when it is a tarball, as Argo's executor does.

These functions block on S3: the engine calls them in worker threads.
"""

import shutil
import tarfile
import tempfile
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from steps.core.errors import StorageError
from steps.core.store import ArtifactStore
from workflows.engine.model import Archive

DEFAULT_GZIP_LEVEL = 6
"""Go's gzip.DefaultCompression, what Argo uses when compressionLevel is not set."""


class Packing(StrEnum):
    NONE = "none"
    TGZ = "tgz"
    DETECT = "detect"
    """An explicit key of unknown origin: extract if it is a tarball."""


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact is stored and how to unpack it (or, for a `raw` artifact, its text)."""

    key: str
    packing: Packing
    is_dir: bool = False
    raw: str | None = None
    sub_path: str = ""
    """A file or folder inside the artifact (an argument's `subPath`)."""


def raw_artifact(data: str) -> ArtifactRef:
    return ArtifactRef("", Packing.NONE, raw=data)


def join_key(prefix: str, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def upload_output(
    store: ArtifactStore,
    local: Path,
    prefix: str,
    name: str,
    archive: Archive | None,
    scratch: Path,
) -> ArtifactRef:
    """Store a file or folder produced by a task; returns where it went."""
    if archive is not None and archive.none is not None:
        key = join_key(prefix, local.name)
        if local.is_dir():
            store.upload_dir(local, key)
            return ArtifactRef(key, Packing.NONE, is_dir=True)
        store.upload_file(local, key)
        return ArtifactRef(key, Packing.NONE)
    level = archive.tar.compression_level if archive and archive.tar else None
    key = join_key(prefix, f"{name}.tgz")
    with tempfile.TemporaryDirectory(prefix=".archive-", dir=scratch) as tmp:
        tarball = Path(tmp) / f"{name}.tgz"
        _pack(local, tarball, level)
        store.upload_file(tarball, key)
    return ArtifactRef(key, Packing.TGZ, is_dir=local.is_dir())


def upload_to_key(
    store: ArtifactStore, local: Path, key: str, archive: Archive | None, scratch: Path
) -> ArtifactRef:
    """An output artifact with its own `s3.key`: exactly that key (a prefix for a folder
    stored without archive), packed as the archive strategy says."""
    if archive is not None and archive.none is not None:
        if local.is_dir():
            store.upload_dir(local, key.rstrip("/"))
            return ArtifactRef(key.rstrip("/"), Packing.NONE, is_dir=True)
        store.upload_file(local, key)
        return ArtifactRef(key, Packing.NONE)
    level = archive.tar.compression_level if archive and archive.tar else None
    with tempfile.TemporaryDirectory(prefix=".archive-", dir=scratch) as tmp:
        tarball = Path(tmp) / "artifact.tgz"
        _pack(local, tarball, level)
        store.upload_file(tarball, key)
    return ArtifactRef(key, Packing.TGZ, is_dir=local.is_dir())


def _pack(local: Path, tarball: Path, level: int | None) -> None:
    gzip_level = DEFAULT_GZIP_LEVEL if level is None or level < 0 else min(level, 9)
    with tarfile.open(tarball, "w:gz", compresslevel=gzip_level) as tar:
        tar.add(local, arcname=local.name)


def locate(store: ArtifactStore, key: str, packing: Packing) -> ArtifactRef:
    """An explicit key is one object, or a folder of objects under `<key>/`."""
    if store.exists(key):
        return ArtifactRef(key, packing)
    if store.list(key.rstrip("/") + "/"):
        return ArtifactRef(key.rstrip("/"), Packing.NONE, is_dir=True)
    raise StorageError(f"input artifact {store.uri(key)} does not exist")


def download_input(store: ArtifactStore, ref: ArtifactRef, dest: Path, scratch: Path) -> None:
    """Fetch an artifact to `dest` (a file or folder path), unpacking a tarball; with a
    `sub_path`, only that entry of it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if ref.raw is not None:
        dest.write_text(ref.raw)
        return
    if ref.sub_path:
        with tempfile.TemporaryDirectory(prefix=".artifact-", dir=scratch) as tmp:
            whole = Path(tmp) / "whole"
            download_input(store, replace(ref, sub_path=""), whole, scratch)
            picked = whole / ref.sub_path
            if not picked.exists():
                raise StorageError(f"{store.uri(ref.key)} has no {ref.sub_path!r} (subPath)")
            shutil.move(picked, dest)
        return
    if ref.packing is Packing.NONE:
        if ref.is_dir:
            store.download_dir(ref.key, dest)
        else:
            store.download_file(ref.key, dest)
        return
    with tempfile.TemporaryDirectory(prefix=".artifact-", dir=scratch) as tmp:
        fetched = Path(tmp) / "object"
        store.download_file(ref.key, fetched)
        if ref.packing is Packing.DETECT and not tarfile.is_tarfile(fetched):
            shutil.move(fetched, dest)
            return
        unpacked = Path(tmp) / "unpacked"
        try:
            with tarfile.open(fetched) as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise StorageError(f"{store.uri(ref.key)} is not a valid tarball: {error}") from error
        entries = list(unpacked.iterdir()) if unpacked.exists() else []
        # Argo's archives hold the artifact's base name as their single top-level entry.
        if len(entries) == 1:
            shutil.move(entries[0], dest)
            return
        dest.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            shutil.move(entry, dest / entry.name)
