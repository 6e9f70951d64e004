"""Where artifact bytes live: the NATS object store, or a directory (a shared mount).

A backend moves one file at a time, in blocks of at most 1 MiB, hashing as it goes; it never holds
a whole file in memory. The logic above it (what to store, what to verify, what to keep on a
resumed pull) lives once, in :mod:`trl_nats.artifacts.store`.

NATS layout, bucket ``trl_artifacts`` by default: one object per file, ``<job>/<name>/<path>``,
and the manifest ``<job>/<name>/trl_nats_manifest.json`` written last (an artifact without a
manifest is incomplete and invisible). Each object is an ordinary object-store object: any NATS
client can read it. Pulls read the chunks with an ordered consumer and write them straight to
disk (nats-py's ``get`` is several times slower).

Directory layout: ``<root>/<job>/<name>/`` with the files and the manifest, made under a
temporary name and renamed into place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import queue
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, ObjectStore

from trl_nats import retry
from trl_nats.artifacts.manifest import (
    BLOCK,
    MANIFEST_FILE,
    ArtifactError,
    ManifestFile,
    check_name,
    nats_uri,
)

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the bytes just moved
CHUNK_BYTES = 1 << 20  # put with 1 MiB chunks: ~4x the throughput of nats-py's 128 KiB default
CHUNK_TIMEOUT_S = 30.0
PENDING_BYTES = 64 << 20  # chunks buffered ahead of the disk at most (flow control keeps it far lower)


class TamperedArtifact(ArtifactError):
    """The bytes read do not match the manifest: the artifact is refused."""


def _digest_hex(digest: str | None) -> str | None:
    if not digest or "=" not in digest:
        return None
    return base64.urlsafe_b64decode(digest.split("=", 1)[1]).hex()


class NatsBackend:
    def __init__(self, obs: ObjectStore, *, max_payload: int | None = None) -> None:
        self.obs = obs
        self.bucket: str = obs._name
        self.chunk = min(CHUNK_BYTES, max_payload or CHUNK_BYTES)

    def uri(self, job_id: str, name: str) -> str:
        return nats_uri(self.bucket, job_id, name)

    def _object(self, job_id: str, name: str, rel: str) -> str:
        return f"{job_id}/{name}/{rel}"

    async def put_file(self, job_id: str, name: str, rel: str, path: Path, progress: Progress | None) -> ManifestFile:
        obj = self._object(job_id, name, rel)
        meta = ObjectMeta(name=obj, options=ObjectMetaOptions(max_chunk_size=self.chunk))
        try:  # an election or a broker restart mid-upload: the whole put is retried (trl_nats.retry)
            with open(path, "rb") as f:
                info = await retry.obj_put(
                    self.obs, obj, _CountingReader(f, progress), meta=meta, what=f"artifact {obj}"
                )
        except OSError:
            raise
        except Exception as exc:
            raise ArtifactError(f"upload of {obj} to {self.bucket} failed: {exc}") from exc
        sha = _digest_hex(info.digest)
        if sha is None:
            raise ArtifactError(f"object store returned no digest for {obj}")
        return ManifestFile(path=rel, size=info.size or 0, sha256=sha)

    async def put_manifest(self, job_id: str, name: str, data: bytes) -> None:
        obj = self._object(job_id, name, MANIFEST_FILE)
        try:
            await retry.obj_put(self.obs, obj, data, what=f"manifest {obj}")
        except Exception as exc:
            raise ArtifactError(f"upload of {obj} to {self.bucket} failed: {exc}") from exc

    async def read_manifest(self, job_id: str, name: str) -> bytes | None:
        try:
            obj = self._object(job_id, name, MANIFEST_FILE)  # read through an election, as the puts are
            return (await retry.retry_write(lambda: self.obs.get(obj), f"the read of manifest {obj}")).data
        except (ObjectNotFoundError, NotFoundError):
            return None

    async def fetch_file(
        self, job_id: str, name: str, entry: ManifestFile, dest: Path, progress: Progress | None
    ) -> str:
        """Stream one object into ``dest``; return the sha256 of what was written (refuses size mismatches)."""
        obj = self._object(job_id, name, entry.path)
        try:
            info = await self.obs.get_info(obj)
        except (ObjectNotFoundError, NotFoundError):
            raise ArtifactError(
                f"{self.uri(job_id, name)}: file {entry.path} is not in the object store (pruned, or never stored)"
            ) from None
        if (info.size or 0) != entry.size:
            raise TamperedArtifact(
                f"{self.uri(job_id, name)}: {entry.path} is {info.size} bytes in the store, the manifest says "
                f"{entry.size}: refusing it"
            )
        if entry.size == 0:
            dest.write_bytes(b"")
            return hashlib.sha256().hexdigest()
        subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self.bucket, obj=info.nuid)
        sub = await self.obs._js.subscribe(subject, ordered_consumer=True, pending_bytes_limit=PENDING_BYTES)
        writer = _BlockWriter(dest)
        try:
            got = chunks = 0
            while chunks < (info.chunks or 0):
                try:
                    msg = await sub.next_msg(timeout=CHUNK_TIMEOUT_S)
                except TimeoutError:
                    raise ArtifactError(
                        f"{self.uri(job_id, name)}: {entry.path} stalled after {got} of {entry.size} bytes "
                        "(chunks missing from the store?): pull again to resume"
                    ) from None
                data = msg.data
                got += len(data)
                chunks += 1
                if got > entry.size:
                    raise TamperedArtifact(
                        f"{self.uri(job_id, name)}: {entry.path} has more bytes than the manifest's "
                        f"{entry.size}: refusing it"
                    )
                await writer.put(data)
                if progress:
                    progress(len(data))
        except BaseException:
            await writer.abort()
            raise
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return await writer.close()

    async def delete(self, job_id: str, name: str, files: list[str]) -> None:
        # the manifest first: from then on the artifact is incomplete, never half-present
        for rel in [MANIFEST_FILE, *files]:
            with contextlib.suppress(ObjectNotFoundError, NotFoundError):
                await self.obs.delete(self._object(job_id, name, rel))

    async def names(self, job_id: str) -> list[str]:
        try:
            infos = await self.obs.list()
        except (NotFoundError, ObjectNotFoundError):
            return []
        out = []
        for info in infos or []:
            parts = (info.name or "").split("/")
            if len(parts) == 3 and parts[0] == job_id and parts[2] == MANIFEST_FILE and not info.deleted:
                out.append(parts[1])
        return out


class _BlockWriter:
    """Writes and hashes received blocks on a thread, so the next chunks arrive while the disk works.

    At most ``depth`` blocks wait for the disk: memory stays bounded whatever the file size.
    """

    def __init__(self, dest: Path, depth: int = 16) -> None:
        self.f = open(dest, "wb")  # noqa: SIM115 - closed by the writer thread
        self.h = hashlib.sha256()
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="trl-nats-pull-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (block := self.q.get()) is not None:
                if self.error is None:
                    self.f.write(block)
                    self.h.update(block)
        except BaseException as exc:  # the disk is full, say: reported by put/close
            self.error = exc
            while self.q.get() is not None:  # keep draining so put never blocks forever
                pass
        finally:
            self.f.close()

    async def put(self, block: bytes | None) -> None:
        if self.error is not None:
            raise self.error
        try:
            self.q.put_nowait(block)
        except queue.Full:
            await asyncio.to_thread(self.q.put, block)

    async def close(self) -> str:
        await self.put(None)
        await asyncio.to_thread(self.thread.join)
        if self.error is not None:
            raise self.error
        return self.h.hexdigest()

    async def abort(self) -> None:
        self.error = self.error or ArtifactError("pull interrupted")
        with contextlib.suppress(BaseException):
            await asyncio.to_thread(self.q.put, None)
            await asyncio.to_thread(self.thread.join)


class _CountingReader:
    """A file wrapper for nats-py's put that reports progress per chunk read."""

    def __init__(self, f, progress: Progress | None) -> None:
        self.f = f
        self.progress = progress

    def seek(self, offset: int) -> int:  # a retried put starts the file again
        return self.f.seek(offset)

    def readinto(self, buf) -> int:
        n = self.f.readinto(buf)
        if n and self.progress:
            self.progress(n)
        return n


class DirBackend:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def uri(self, job_id: str, name: str) -> str:
        return str(self.root / job_id / name)

    def _dir(self, job_id: str, name: str) -> Path:
        return self.root / job_id / check_name(name)

    def staging(self, job_id: str, name: str) -> Path:
        path = self.root / job_id / f".{name}.{uuid.uuid4().hex[:8]}.partial"
        path.mkdir(parents=True)
        return path

    async def put_file(self, staging: Path, rel: str, path: Path, progress: Progress | None) -> ManifestFile:
        return await asyncio.to_thread(_copy_hashing, path, staging / rel, progress, rel)

    async def commit(self, staging: Path, job_id: str, name: str, manifest: bytes) -> None:
        def commit() -> None:
            (staging / MANIFEST_FILE).write_bytes(manifest)
            final = self._dir(job_id, name)
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)

        await asyncio.to_thread(commit)

    async def read_manifest(self, job_id: str, name: str) -> bytes | None:
        path = self._dir(job_id, name) / MANIFEST_FILE
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def fetch_file(
        self, job_id: str, name: str, entry: ManifestFile, dest: Path, progress: Progress | None
    ) -> str:
        src = self._dir(job_id, name) / entry.path
        if not src.is_file():
            raise ArtifactError(f"{self.uri(job_id, name)}: file {entry.path} is missing")
        return (await asyncio.to_thread(_copy_hashing, src, dest, progress, entry.path, entry.size)).sha256

    async def delete(self, job_id: str, name: str, files: list[str]) -> None:
        path = self._dir(job_id, name)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                (path / MANIFEST_FILE).unlink()
            shutil.rmtree(path, ignore_errors=True)

        await asyncio.to_thread(remove)

    async def names(self, job_id: str) -> list[str]:
        base = self.root / job_id
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / MANIFEST_FILE).is_file())


def _copy_hashing(src: Path, dest: Path, progress: Progress | None, rel: str, limit: int | None = None) -> ManifestFile:
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while block := fin.read(BLOCK):
            size += len(block)
            if limit is not None and size > limit:
                raise TamperedArtifact(f"{src} has more bytes than the manifest's {limit}: refusing it")
            fout.write(block)
            h.update(block)
            if progress:
                progress(len(block))
    return ManifestFile(path=rel, size=size, sha256=h.hexdigest())
