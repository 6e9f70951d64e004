"""The artifact store: put a directory as an artifact, pull it back verified, list, delete.

One class over both backends (NATS object store, directory). A put hashes every file as it
streams it and writes the manifest last. A pull reads the manifest (checked against the job
record's sha256 for it when given), keeps every file already in the destination whose sha256
matches (so an interrupted pull resumes where it stopped), streams the others through a
``.trl_nats_partial`` folder, and refuses any file whose bytes do not hash to the manifest's
sha256: nothing unverified ever appears under its real name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nats.js.object_store import ObjectStore

from trl_nats.artifacts.backends import DirBackend, NatsBackend, TamperedArtifact
from trl_nats.artifacts.manifest import (
    MANIFEST_FILE,
    ArtifactError,
    Manifest,
    ManifestFile,
    artifact_files,
    check_name,
    decode_manifest,
    encode_manifest,
    sha256_file,
    step_of,
)

PARTIAL_DIR = ".trl_nats_partial"


class TransferProgress(Protocol):
    """What a pull or put reports to (a progress bar, a test's recorder)."""

    def start(self, label: str, total_bytes: int, done_bytes: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    manifest_sha256: str
    bytes: int
    manifest: Manifest


@dataclass
class PullResult:
    path: Path
    manifest: Manifest
    downloaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # verified files already there from an earlier pull
    bytes_downloaded: int = 0


class ArtifactStore:
    def __init__(self, backend: NatsBackend | DirBackend) -> None:
        self.backend = backend

    @classmethod
    def nats(cls, obs: ObjectStore, *, max_payload: int | None = None) -> ArtifactStore:
        return cls(NatsBackend(obs, max_payload=max_payload))

    @classmethod
    def directory(cls, root: Path | str) -> ArtifactStore:
        return cls(DirBackend(Path(root)))

    def uri(self, job_id: str, name: str) -> str:
        return self.backend.uri(job_id, check_name(name))

    # -- put ----------------------------------------------------------------------
    async def put(
        self,
        job_id: str,
        src: Path,
        *,
        name: str | None = None,
        step: int | None = None,
        progress: TransferProgress | None = None,
    ) -> StoredArtifact:
        """Store directory ``src`` as artifact ``name`` (default: its directory name) of ``job_id``."""
        name = check_name(name or src.name)
        if not src.is_dir():
            raise ArtifactError(f"{src} is not a directory: nothing to store")
        with _snapshot_dir(src) as tmp:
            # hard links: the trainer may rotate the checkpoint away while it uploads (it never rewrites a file)
            root = (tmp and await asyncio.to_thread(_snapshot, src, tmp / "s")) or src
            files = await asyncio.to_thread(artifact_files, root)
            total = sum(p.stat().st_size for _, p in files)
            if progress:
                progress.start(f"{job_id}/{name}", total, 0)
            entries: list[ManifestFile] = []
            b = self.backend
            if isinstance(b, DirBackend):
                staging = b.staging(job_id, name)
                try:
                    for rel, path in files:
                        entries.append(await b.put_file(staging, rel, path, progress and progress.advance))
                    manifest = self._manifest(job_id, name, step, entries)
                    data = encode_manifest(manifest)
                    await b.commit(staging, job_id, name, data)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
            else:
                old = await b.read_manifest(job_id, name)
                if old is not None:  # re-stored (a resumed run saved this step again): retire the old one first
                    await b.delete(job_id, name, [])
                for rel, path in files:
                    entries.append(await b.put_file(job_id, name, rel, path, progress and progress.advance))
                manifest = self._manifest(job_id, name, step, entries)
                data = encode_manifest(manifest)
                await b.put_manifest(job_id, name, data)
        if progress:
            progress.finish()
        return StoredArtifact(self.uri(job_id, name), hashlib.sha256(data).hexdigest(), manifest.bytes, manifest)

    @staticmethod
    def _manifest(job_id: str, name: str, step: int | None, entries: list[ManifestFile]) -> Manifest:
        step = step if step is not None else step_of(name)
        return Manifest(job_id=job_id, name=name, step=step, final=name == "final", files=entries)

    # -- read -------------------------------------------------------------------
    async def manifest(self, job_id: str, name: str, expected_sha256: str | None = None) -> Manifest | None:
        data = await self.backend.read_manifest(job_id, check_name(name))
        return None if data is None else decode_manifest(data, expected_sha256, self.uri(job_id, name))

    async def names(self, job_id: str) -> list[str]:
        return await self.backend.names(job_id)

    async def delete(self, job_id: str, name: str) -> None:
        manifest = await self.manifest(job_id, name)
        await self.backend.delete(job_id, check_name(name), [f.path for f in manifest.files] if manifest else [])

    # -- pull -------------------------------------------------------------------
    async def pull(
        self,
        job_id: str,
        name: str,
        dest: Path,
        *,
        expected_sha256: str | None = None,
        progress: TransferProgress | None = None,
    ) -> PullResult:
        """Download artifact ``name`` into ``dest`` (a directory ``from_pretrained`` loads), every file verified."""
        uri = self.uri(job_id, name)
        data = await self.backend.read_manifest(job_id, name)
        if data is None:
            raise ArtifactError(
                f"{uri} is not in the artifact store (never stored, still uploading, or pruned): "
                f"see `trl-nats artifacts {job_id}`"
            )
        manifest = decode_manifest(data, expected_sha256, uri)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        partial = dest / PARTIAL_DIR
        result = PullResult(path=dest, manifest=manifest)
        todo: list[ManifestFile] = []
        for entry in manifest.files:
            target = dest / entry.path
            if await asyncio.to_thread(_verified, target, entry):
                result.kept.append(entry.path)
            else:
                todo.append(entry)
        if progress:
            progress.start(uri, manifest.bytes, sum(f.size for f in manifest.files if f.path in set(result.kept)))
        for entry in todo:
            tmp = partial / entry.path
            tmp.parent.mkdir(parents=True, exist_ok=True)
            try:
                sha = await self.backend.fetch_file(job_id, name, entry, tmp, progress and progress.advance)
                if sha != entry.sha256:
                    raise TamperedArtifact(
                        f"{uri}: {entry.path} has sha256 {sha}, the manifest says {entry.sha256}: "
                        "the stored bytes were changed or corrupted; refusing it"
                    )
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            target = dest / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            result.downloaded.append(entry.path)
            result.bytes_downloaded += entry.size
        shutil.rmtree(partial, ignore_errors=True)
        (dest / MANIFEST_FILE).write_bytes(data)
        if progress:
            progress.finish()
        return result


def _verified(target: Path, entry: ManifestFile) -> bool:
    try:
        if not target.is_file() or target.stat().st_size != entry.size:
            return False
    except OSError:
        return False
    return sha256_file(target) == entry.sha256


@contextlib.contextmanager
def _snapshot_dir(src: Path) -> Iterator[Path | None]:
    """A temporary folder beside ``src`` (same file system, so hard links work), or None if it cannot be made."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".trln-snap-", dir=src.parent))
    except OSError:
        yield None
        return
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _snapshot(src: Path, dest: Path) -> Path | None:
    """Hard-link copy of ``src`` at ``dest``; None where links are not possible (read ``src`` directly then)."""
    try:
        for rel, path in artifact_files(src):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        return dest
    except OSError:
        shutil.rmtree(dest, ignore_errors=True)
        return None
