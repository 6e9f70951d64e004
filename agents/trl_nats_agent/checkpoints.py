"""Where a job's checkpoints and final model live, so that another agent can resume and anyone can pull.

A recipe writes ``OUTPUT_DIR/checkpoint-N`` and marks it complete
(``trl_nats_complete.json``), and at the end ``OUTPUT_DIR/final``; the agent then *stores* each with one of:

- ``nats`` (the default): the artifacts object store, through :mod:`trl_nats.artifacts` (one object per
  file plus a manifest with sizes and sha256, streamed in 1 MiB blocks); for models that fit (``max_bytes``).
- a directory ``DIR``: the same artifact layout in ``DIR/<job>/<name>`` (a shared mount).
- ``local``: leave it where the trainer wrote it (node-local disk). The location is the directory itself.

Only a stored checkpoint is named in the job record as the latest complete
one. :meth:`CheckpointStore.fetch` brings a stored checkpoint into a local
directory for ``--resume``, every file checked against the manifest.
Nothing here unpickles anything: the recipe loads weights with safetensors
and every ``torch.load`` is forced to ``weights_only`` (see the agent's env).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from nats.js.object_store import ObjectStore

from trl_nats.artifacts import FINAL, ArtifactError, ArtifactStore
from trl_nats.artifacts.manifest import NATS_SCHEME, parse_nats_uri
from trl_nats_agent.recipes.contract import COMPLETE_MARKER  # written by the recipe once every rank saved

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 32 << 30  # streamed in 1 MiB blocks, so memory is not the limit: the server's disk is


class CheckpointStoreError(RuntimeError):
    """A checkpoint could not be stored or fetched; the message says what to change."""


@dataclass(frozen=True)
class StoredCheckpoint:
    location: str  # a directory path, or nats://<bucket>/<job>/<name>
    sha256: str | None  # of the artifact's manifest
    size: int


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(r) for r in roots)


class CheckpointStore:
    """Stores checkpoints and final models and fetches checkpoints back. ``spec`` is "local", "nats" or a directory."""

    def __init__(self, spec: str, *, artifacts: ObjectStore | None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.spec = spec
        self.kind = "local" if spec == "local" else "nats" if spec == "nats" else "dir"
        self.root = Path(spec).resolve() if self.kind == "dir" else None
        self.artifacts = artifacts
        self.max_bytes = max_bytes
        self.artifact_store: ArtifactStore | None = None
        if self.kind == "dir":
            self.artifact_store = ArtifactStore.directory(self.root)
        elif self.kind == "nats" and artifacts is not None:
            self.artifact_store = ArtifactStore.nats(artifacts, max_payload=artifacts._js._nc.max_payload)

    async def store(self, job_id: str, path: Path, step: int | None = None) -> StoredCheckpoint:
        if path.name != FINAL and not is_complete(path):
            raise CheckpointStoreError(f"{path} has no {COMPLETE_MARKER}: not every rank finished writing it")
        size = await asyncio.to_thread(dir_size, path)
        if self.artifact_store is None:
            return StoredCheckpoint(str(path), None, size)
        if self.kind == "nats" and size > self.max_bytes:
            raise CheckpointStoreError(
                f"{path.name} is {size:,} bytes, over the NATS checkpoint store's limit of {self.max_bytes:,} "
                "bytes: raise the agent's --checkpoint-max-bytes if the server has room, or store checkpoints "
                "on a shared path (--checkpoint-store DIR)"
            )
        try:
            stored = await self.artifact_store.put(job_id, path, step=step)
        except ArtifactError as exc:
            raise CheckpointStoreError(str(exc)) from exc
        return StoredCheckpoint(stored.uri, stored.manifest_sha256, stored.bytes)

    # -- fetching -----------------------------------------------------------------
    def shared(self, location: str) -> bool:
        """Whether every node can fetch the checkpoint at ``location``: in the object store, or under this
        agent's shared checkpoint directory (a path elsewhere is some node's own disk)."""
        if location.startswith(NATS_SCHEME):
            return True
        return self.root is not None and Path(location).is_absolute() and _under(Path(location).resolve(), [self.root])

    async def fetch(self, location: str, sha256: str | None, dest_dir: Path, allowed_roots: list[Path]) -> Path:
        """A complete local copy of the checkpoint at ``location``, under ``dest_dir``; its path."""
        if location.startswith(NATS_SCHEME):
            return await self._download(location, sha256, dest_dir)
        path = Path(location)
        if not path.is_absolute():
            raise CheckpointStoreError(
                f"checkpoint location {location!r} is neither a nats:// artifact nor an absolute path"
            )
        resolved = path.resolve()
        if not _under(resolved, allowed_roots):
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
        try:
            bucket, job_id, name = parse_nats_uri(location)
        except ArtifactError as exc:
            raise CheckpointStoreError(str(exc)) from None
        if self.artifacts is None or self.artifacts._name != bucket:
            raise CheckpointStoreError(f"checkpoint {location}: this agent does not use object store {bucket!r}")
        store = ArtifactStore.nats(self.artifacts, max_payload=self.artifacts._js._nc.max_payload)
        dest = dest_dir / name
        try:
            await store.pull(job_id, name, dest, expected_sha256=sha256)
        except ArtifactError as exc:
            raise CheckpointStoreError(str(exc)) from exc
        if not is_complete(dest):
            raise CheckpointStoreError(f"checkpoint {location} has no {COMPLETE_MARKER}: not a complete checkpoint")
        return dest
