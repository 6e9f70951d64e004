"""A job's artifacts as a client sees them: list them, pull one, prune old checkpoints.

The job record names each stored artifact (``Checkpoint.location``: a ``nats://`` URI or a path,
``sha256`` of its manifest, ``bytes``); these functions find the store behind each location, so a
client anywhere on the NATS network can pull, and a client on the shared mount can use a
directory store. The ``Client`` methods ``artifacts``, ``pull`` and ``prune`` call these.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from trl_nats.artifacts.manifest import (
    FINAL,
    NATS_SCHEME,
    ArtifactError,
    ArtifactInfo,
    artifact_name,
    parse_nats_uri,
)
from trl_nats.artifacts.store import ArtifactStore, PullResult, TransferProgress
from trl_nats.messages import Checkpoint, JobRecord
from trl_nats.settings import permission_denied
from trl_nats.store import JobStore
from trl_nats.topology import Topology


class Client(Protocol):
    """What these functions need of ``trl_nats.client.Client`` (which calls them)."""

    nc: NATS
    js: JetStreamContext
    topo: Topology
    store: JobStore


def name_of(ckpt: Checkpoint) -> str:
    return FINAL if ckpt.final else f"checkpoint-{ckpt.step}"


async def store_at(client: Client, location: str) -> tuple[ArtifactStore, str, str]:
    """The store holding ``location``, and the (job, name) in it."""
    if location.startswith(NATS_SCHEME):
        bucket, job_id, name = parse_nats_uri(location)
        obs = client.topo.artifacts
        if obs._name != bucket:
            obs = await client.js.object_store(bucket)
        return ArtifactStore.nats(obs, max_payload=client.nc.max_payload), job_id, name
    path = Path(location)
    if not path.is_absolute():
        raise ArtifactError(f"artifact location {location!r} is neither a nats:// URI nor an absolute path")
    return ArtifactStore.directory(path.parent.parent), path.parent.name, path.name


def stored(record: JobRecord) -> dict[str, Checkpoint]:
    """The record's stored artifacts by name (the newest record of a name wins)."""
    out: dict[str, Checkpoint] = {}
    for ckpt in record.checkpoints:
        if ckpt.location:
            out[name_of(ckpt)] = ckpt
    return out


async def job_artifacts(client: Client, job_id: str) -> list[ArtifactInfo]:
    record = await client.store.get(job_id)
    infos = []
    for name, ckpt in stored(record).items():
        try:
            store, job, art = await store_at(client, ckpt.location or "")
            present = await store.manifest(job, art) is not None
        except (ArtifactError, OSError):
            present = False
        infos.append(
            ArtifactInfo(
                name=name,
                step=ckpt.step,
                final=ckpt.final,
                uri=ckpt.location or "",
                bytes=ckpt.bytes or 0,
                present=present,
            )
        )
    infos.sort(key=lambda i: (i.final, i.step or 0))
    return infos


async def pull(
    client: Client,
    job_id: str,
    checkpoint: int | str,
    dest: Path,
    *,
    progress: TransferProgress | None = None,
) -> PullResult:
    record = await client.store.get(job_id)
    name = artifact_name(checkpoint)
    arts = stored(record)
    ckpt = arts.get(name)
    if ckpt is None:
        have = ", ".join(arts) or "none yet"
        hint = " (the job has not completed)" if name == FINAL and not record.state.terminal else ""
        raise ArtifactError(f"job {job_id} has no stored artifact {name!r}{hint}; stored: {have}")
    store, job, art = await store_at(client, ckpt.location or "")
    if await store.manifest(job, art) is None and not (ckpt.location or "").startswith(NATS_SCHEME):
        raise ArtifactError(
            f"{ckpt.location} is not reachable from here (a directory on {ckpt.node}, or pruned): pull where that "
            "directory is mounted, or run agents with --checkpoint-store nats"
        )
    return await store.pull(job, art, Path(dest), expected_sha256=ckpt.sha256, progress=progress)


async def prune(client: Client, job_id: str, keep: int = 1) -> list[ArtifactInfo]:
    """Delete all but the newest ``keep`` checkpoints; never the final model, nor the checkpoint an unfinished
    job would resume from. Returns what was deleted."""
    if keep < 0:
        raise ArtifactError(f"--keep {keep}: keep must be 0 or more")
    record = await client.store.get(job_id)
    resume_point = None
    if not record.state.terminal and record.latest_checkpoint is not None:
        resume_point = name_of(record.latest_checkpoint)
    checkpoints = [i for i in await job_artifacts(client, job_id) if not i.final and i.present]
    checkpoints.sort(key=lambda i: i.step or 0, reverse=True)
    removed = []
    for info in checkpoints[keep:]:
        if info.name == resume_point:
            continue
        store, job, art = await store_at(client, info.uri)
        await store.delete(job, art)
        removed.append(info)
    return removed


class ArtifactsMixin:
    """``Client.artifacts``, ``Client.pull`` and ``Client.prune`` (``trl_nats.client.Client`` mixes this in)."""

    async def artifacts(self: Client, job_id: str) -> list[ArtifactInfo]:
        """The job's stored checkpoints and final model: name, step, URI or path, size, still present."""
        return await job_artifacts(self, job_id)

    async def pull(
        self: Client,
        job_id: str,
        checkpoint: int | str = "final",
        dest: str | os.PathLike[str] = ".",
        *,
        progress: TransferProgress | None = None,
    ) -> PullResult:
        """Download the final model or checkpoint STEP into ``dest``, every file verified; resumes a partial pull."""
        work = pull(self, job_id, checkpoint, Path(dest), progress=progress)
        return await _refused_says_so(self, f"pull {checkpoint} of job {job_id}", work)

    async def prune(self: Client, job_id: str, keep: int = 0) -> list[ArtifactInfo]:
        """Delete all but the newest ``keep`` stored checkpoints (never the final model); returns what went."""
        return await _refused_says_so(self, f"prune job {job_id}", prune(self, job_id, keep))


async def _refused_says_so[T](client: Client, what: str, work: Awaitable[T]) -> T:
    """Await ``work``; if the server refused one of its requests, raise PermissionDenied naming ``what``."""
    seen = len(getattr(client.nc, "trl_violations", ()))
    try:
        return await work
    except Exception as exc:
        denied = permission_denied(client.nc, what, seen)
        if denied:
            raise denied from exc
        raise
