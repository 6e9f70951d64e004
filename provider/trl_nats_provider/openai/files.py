"""Uploaded files: bytes in the NATS datasets object store (content-addressed), records in a KV bucket.

A file is checked once, on upload, against the row schema (:mod:`trl_nats.rows`) for both methods:
the checked rows for each method it can train are stored beside the upload, content-addressed too,
so a job names them without reading the file again. A file no method can train gets status
``error`` and ``status_details`` naming the line and field at fault.

Records live under ``<namespace>.<file id>`` in the bucket ``<prefix>_openai_files``: a key lists and
reads only its own namespace. Deleting a file removes its record, and its objects when no other
file and no unfinished job uses them.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import msgspec
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.kv import KeyValue

from trl_nats import retry
from trl_nats.client import Client
from trl_nats.messages import DatasetRef, JobKind
from trl_nats.rows import RowError, read_jsonl
from trl_nats_provider.openai.errors import not_found

METHOD_OF = {JobKind.dpo: "dpo", JobKind.sft: "supervised"}
_PREFERENCE_KEYS = {"input", "preferred_output", "non_preferred_output", "chosen", "rejected"}


class FileRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    namespace: str
    filename: str
    bytes: int
    created_at: float
    purpose: str
    status: str  # processed | error
    status_details: str | None = None
    raw: DatasetRef | None = None  # the upload as sent (None: the bytes live in a host's Files API, see ogx.py)
    datasets: dict[str, DatasetRef] = msgspec.field(default_factory=dict)  # method -> checked rows
    formats: dict[str, str] = msgspec.field(default_factory=dict)  # method -> row format

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "status_details": self.status_details,
            "expires_at": None,
        }


def _likely_kind(data: bytes) -> JobKind:
    """Which method's error to report when no method accepts a file: the first line's fields decide."""
    for raw in data.splitlines():
        if raw.strip():
            try:
                row = json.loads(raw)
            except ValueError:
                return JobKind.sft
            return JobKind.dpo if isinstance(row, dict) and _PREFERENCE_KEYS & set(row) else JobKind.sft
    return JobKind.sft


def describe(exc: RowError) -> str:
    where = []
    if exc.line is not None:
        where.append(f"line {exc.line}")
    if exc.field is not None and repr(exc.field) not in exc.reason:
        where.append(f"field {exc.field!r}")
    return f"{', '.join(where) or 'file'}: {exc.reason}"


def check(data: bytes) -> tuple[dict[JobKind, Any], str | None]:
    """The checked rows of ``data`` for each method that can train on it, or the reason none can."""
    accepted: dict[JobKind, Any] = {}
    errors: dict[JobKind, RowError] = {}
    for kind in (JobKind.dpo, JobKind.sft):
        try:
            accepted[kind] = read_jsonl(data, kind)
        except RowError as exc:
            errors[kind] = exc
    if accepted:
        return accepted, None
    kind = _likely_kind(data)
    return {}, f"not a {METHOD_OF[kind]} training file: {describe(errors[kind])}"


class FileStore:
    def __init__(self, client: Client, kv: KeyValue) -> None:
        self.client = client
        self.kv = kv
        self.bound_s = client.settings.write_retry_s  # how long a write rides out an election (trl_nats/retry.py)

    @classmethod
    async def open(cls, client: Client) -> FileStore:
        bucket = client.names.jobs_bucket.removesuffix("_jobs") + "_openai_files"
        try:
            kv = await client.js.key_value(bucket)
        except (BucketNotFoundError, NotFoundError):
            kv = await retry.retry_write(  # the same config again is no change: a plain retry is safe
                lambda: client.js.create_key_value(
                    bucket=bucket, history=1, replicas=client.settings.replicas, description="OpenAI API files"
                ),
                f"the {bucket} bucket",
                bound_s=client.settings.write_retry_s,
                nc=client.nc,
            )
        return cls(client, kv)

    async def create(self, namespace: str, filename: str, purpose: str, data: bytes) -> FileRecord:
        accepted, error = check(data)
        raw = await self.client.upload_dataset(data)
        datasets: dict[str, DatasetRef] = {}
        formats: dict[str, str] = {}
        for kind, checked in accepted.items():
            datasets[kind.value] = await self.client.upload_dataset(checked.rows)
            formats[kind.value] = checked.format
        record = FileRecord(
            id=f"file-{uuid.uuid4().hex[:24]}",
            namespace=namespace,
            filename=filename,
            bytes=len(data),
            created_at=time.time(),
            purpose=purpose,
            status="error" if error else "processed",
            status_details=error,
            raw=raw,
            datasets=datasets,
            formats=formats,
        )
        key = f"{namespace}.{record.id}"
        await retry.kv_create(self.kv, key, msgspec.json.encode(record), what=f"file {record.id}", bound_s=self.bound_s)
        return record

    async def get(self, namespace: str, file_id: str, param: str | None = None) -> FileRecord:
        try:
            entry = await self.kv.get(f"{namespace}.{file_id}")
        except (KeyNotFoundError, ValueError):
            raise not_found("file", file_id, param) from None
        if not entry.value:
            raise not_found("file", file_id, param)
        return msgspec.json.decode(entry.value, type=FileRecord)

    async def list(self, namespace: str | None) -> list[FileRecord]:
        """The namespace's files (every namespace's with None), newest first."""
        watcher = await self.kv.watch(f"{namespace}.*" if namespace else ">", ignore_deletes=True)
        out = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    out.append(msgspec.json.decode(entry.value, type=FileRecord))
        finally:
            await watcher.stop()
        out.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return out

    async def content(self, record: FileRecord) -> bytes:
        if record.raw is None:
            raise not_found("file content", record.id)
        buf = io.BytesIO()
        try:
            await self.client.topo.datasets.get(record.raw.object, writeinto=buf)
        except ObjectNotFoundError:
            raise not_found("file content", record.id) from None
        return buf.getvalue()

    async def delete(self, record: FileRecord) -> None:
        key = f"{record.namespace}.{record.id}"
        await retry.retry_write(  # a delete marker: a second one changes nothing
            lambda: self.kv.delete(key), f"the delete of file {record.id}", bound_s=self.bound_s, nc=self.client.nc
        )
        objects = {d.object for d in record.datasets.values()} | ({record.raw.object} if record.raw else set())
        in_use: set[str] = set()
        for other in await self.list(None):
            in_use |= {d.object for d in other.datasets.values()} | ({other.raw.object} if other.raw else set())
        for job in await self.client.list_jobs():
            if not job.state.terminal:
                in_use |= {job.spec.dataset.object, *([job.spec.eval_dataset.object] if job.spec.eval_dataset else [])}
        for name in objects - in_use:
            try:
                await retry.retry_write(
                    lambda n=name: self.client.topo.datasets.delete(n),
                    f"the delete of dataset {name}",
                    bound_s=self.bound_s,
                    nc=self.client.nc,
                )
            except ObjectNotFoundError:
                pass
