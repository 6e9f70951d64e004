"""Where a job's checkpoints live, so that another agent can resume the job after this one dies.

A recipe writes ``OUTPUT_DIR/checkpoint-N`` and marks it complete
(``trl_nats_complete.json``); the agent then *stores* it with one of:

- ``local``: leave it where the trainer wrote it (node-local disk, or a shared
  file system if the output root is one). The location is the directory itself.
- a directory ``DIR``: copy it to ``DIR/<job>/checkpoint-N`` (a shared mount),
  atomically (copy to a temporary name, then rename).
- ``nats``: upload it to the artifacts object store as one uncompressed tar,
  in chunks, with its sha256; for models that fit (``max_bytes``).

Only a stored checkpoint is named in the job record as the latest complete
one. :meth:`CheckpointStore.fetch` brings a stored checkpoint into a local
directory for ``--resume``: it checks the sha256, and unpacks with tarfile's
``data`` filter (no absolute paths, no ``..``, no links out, no devices).
Nothing here unpickles anything: the recipe loads weights with safetensors
and every ``torch.load`` is forced to ``weights_only`` (see the agent's env).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from trl_nats import retry
from trl_nats_agent.recipes.contract import COMPLETE_MARKER  # written by the recipe once every rank saved

log = logging.getLogger(__name__)

OBJECT_SCHEME = "nats-obj://"
CHUNK_BYTES = 512 * 1024  # well under nats-server's default max_payload of 1 MiB
DEFAULT_MAX_BYTES = 2 << 30


class CheckpointStoreError(RuntimeError):
    """A checkpoint could not be stored or fetched; the message says what to change."""


@dataclass(frozen=True)
class StoredCheckpoint:
    location: str  # a directory path, or nats-obj://<bucket>/<object>
    sha256: str | None
    size: int


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def _snapshot(src: Path, dest: Path) -> None:
    """Hard-link copy of a checkpoint dir (cheap; safe because the Trainer writes new files, never in place)."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link, symlinks=False)


class CheckpointStore:
    """Stores checkpoints for resume and fetches them back. ``spec`` is "local", "nats" or a directory."""

    def __init__(self, spec: str, *, artifacts: ObjectStore | None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.spec = spec
        self.kind = "local" if spec == "local" else "nats" if spec == "nats" else "dir"
        self.root = Path(spec).resolve() if self.kind == "dir" else None
        self.artifacts = artifacts
        self.max_bytes = max_bytes

    # -- storing ----------------------------------------------------------------
    async def store(self, job_id: str, path: Path) -> StoredCheckpoint:
        if not is_complete(path):
            raise CheckpointStoreError(f"{path} has no {COMPLETE_MARKER}: not every rank finished writing it")
        if self.kind == "local":
            return StoredCheckpoint(str(path), None, await asyncio.to_thread(dir_size, path))
        if self.kind == "dir":
            return await asyncio.to_thread(self._copy_to_dir, job_id, path)
        return await self._upload(job_id, path)

    def _copy_to_dir(self, job_id: str, path: Path) -> StoredCheckpoint:
        assert self.root is not None
        dest = self.root / job_id / path.name
        if not is_complete(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial"
            shutil.copytree(path, tmp)
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        return StoredCheckpoint(str(dest), None, dir_size(dest))

    def object_name(self, job_id: str, path: Path) -> str:
        return f"checkpoints/{job_id}/{path.name}.tar"

    async def _upload(self, job_id: str, path: Path) -> StoredCheckpoint:
        assert self.artifacts is not None
        size = await asyncio.to_thread(dir_size, path)
        if size > self.max_bytes:
            raise CheckpointStoreError(
                f"{path.name} is {size:,} bytes, over the NATS checkpoint store's limit of {self.max_bytes:,} "
                "bytes: raise the agent's --checkpoint-max-bytes if the server has room, or store checkpoints "
                "on a shared path (--checkpoint-store DIR)"
            )
        with tempfile.TemporaryDirectory(prefix="trln-ckpt-") as tmp:
            snapshot = Path(tmp) / path.name
            tar_path = Path(tmp) / "checkpoint.tar"
            digest = await asyncio.to_thread(self._pack, path, snapshot, tar_path)
            name = self.object_name(job_id, path)
            meta = ObjectMeta(
                name=name,
                description=f"{job_id} {path.name}",
                headers={"Trl-Sha256": digest},
                options=ObjectMetaOptions(max_chunk_size=CHUNK_BYTES),
            )
            try:  # an election or a broker restart mid-upload: the whole put is retried
                with open(tar_path, "rb") as f:
                    info = await retry.obj_put(self.artifacts, name, f, meta=meta, what=f"checkpoint {name}")
            except Exception as exc:
                raise CheckpointStoreError(f"upload of {path.name} failed: {exc}") from exc
        return StoredCheckpoint(f"{OBJECT_SCHEME}{self.artifacts._name}/{name}", digest, info.size or 0)

    @staticmethod
    def _pack(path: Path, snapshot: Path, tar_path: Path) -> str:
        _snapshot(path, snapshot)
        with tarfile.open(tar_path, "w") as tar:
            tar.add(snapshot, arcname=path.name)
        h = hashlib.sha256()
        with open(tar_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    async def forget(self, location: str) -> None:
        """Drop a stored checkpoint that a newer one replaced (object store only: paths belong to the trainer)."""
        if not location.startswith(OBJECT_SCHEME) or self.artifacts is None:
            return
        name = location.removeprefix(OBJECT_SCHEME).split("/", 1)[1]
        with contextlib.suppress(ObjectNotFoundError, NotFoundError, Exception):
            await self.artifacts.delete(name)

    # -- fetching -----------------------------------------------------------------
    async def fetch(self, location: str, sha256: str | None, dest_dir: Path, allowed_roots: list[Path]) -> Path:
        """A complete local copy of the checkpoint at ``location``, under ``dest_dir``; its path."""
        if location.startswith(OBJECT_SCHEME):
            return await self._download(location, sha256, dest_dir)
        path = Path(location)
        if not path.is_absolute():
            raise CheckpointStoreError(
                f"checkpoint location {location!r} is neither a nats object nor an absolute path"
            )
        resolved = path.resolve()
        if not any(resolved.is_relative_to(r) for r in allowed_roots):
            raise CheckpointStoreError(
                f"checkpoint {location} is outside this agent's output and checkpoint roots: not loading it"
            )
        if not is_complete(resolved):
            raise CheckpointStoreError(
                f"checkpoint {location} is not reachable from this agent (node-local disk of another node?): "
                "store checkpoints on a shared path or in NATS (--checkpoint-store) to resume elsewhere"
            )
        return resolved

    async def _download(self, location: str, sha256: str | None, dest_dir: Path) -> Path:
        bucket, _, name = location.removeprefix(OBJECT_SCHEME).partition("/")
        store = self.artifacts
        if store is None or store._name != bucket:
            raise CheckpointStoreError(f"checkpoint {location}: this agent does not use object store {bucket!r}")
        dest_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="trln-fetch-", dir=dest_dir) as tmp:
            tar_path = Path(tmp) / "checkpoint.tar"
            try:
                with open(tar_path, "wb") as f:
                    await store.get(name, writeinto=f)
            except (ObjectNotFoundError, NotFoundError):
                raise CheckpointStoreError(f"checkpoint {location} is not in the object store") from None
            digest = await asyncio.to_thread(_sha256_file, tar_path)
            if sha256 and digest != sha256:
                raise CheckpointStoreError(f"checkpoint {location} has sha256 {digest}, the record says {sha256}")
            return await asyncio.to_thread(_unpack, tar_path, Path(tmp), dest_dir)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unpack(tar_path: Path, tmp: Path, dest_dir: Path) -> Path:
    staging = tmp / "unpacked"
    with tarfile.open(tar_path, "r") as tar:
        tops = {Path(m.name).parts[0] for m in tar.getmembers() if m.name not in ("", ".")}
        if len(tops) != 1:
            raise CheckpointStoreError(f"checkpoint archive has {len(tops)} top-level entries, expected one directory")
        tar.extractall(staging, filter="data")  # refuses absolute paths, '..', links out, devices
    top = tops.pop()
    if not re.fullmatch(r"checkpoint-\d+", top):
        raise CheckpointStoreError(f"checkpoint archive holds {top!r}, expected a checkpoint-N directory")
    src = staging / top
    if not src.is_dir() or not is_complete(src):
        raise CheckpointStoreError(f"checkpoint archive {top!r} is not a complete checkpoint directory")
    final = dest_dir / top
    if final.exists():
        shutil.rmtree(final)
    src.rename(final)
    return final
