"""What each API call does on NATS, without HTTP: the routes in ``app.py`` call these methods.

Jobs are the core's job records read through :class:`trl_nats.client.Client`; nothing about a job is
kept here. A namespace (from the caller's API key) only ever sees jobs whose spec carries its name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js.errors import BadRequestError, NotFoundError

from trl_nats.client import Client, JobAlreadyFinished, Unschedulable
from trl_nats.messages import (
    BadMessage,
    Event,
    JobKind,
    JobRecord,
    JobSpec,
    LoraParams,
    Resources,
    TrainingParams,
    decode,
    valid_job_id,
    validate_spec,
)
from trl_nats.pausing import CannotPause
from trl_nats.store import JobNotFound
from trl_nats_provider import dpo_lora
from trl_nats_provider.openai import objects
from trl_nats_provider.openai.errors import APIError, bad_request, conflict, not_found, unavailable
from trl_nats_provider.openai.files import METHOD_OF, FileRecord, FileStore
from trl_nats_provider.openai.history import newest_page
from trl_nats_provider.openai.requests import JobRequest, resolve_hyperparameters, training_values

log = logging.getLogger(__name__)

FORMAT_HINT = {
    JobKind.dpo: "DPO needs preference lines: {'input': {'messages': [...]}, 'preferred_output': [...], "
    "'non_preferred_output': [...]} (or prompt/chosen/rejected)",
    JobKind.sft: "supervised fine-tuning needs {'messages': [...]} lines (or prompt/completion, or text)",
}


@dataclass
class GatewayConfig:
    nodes: int = 1
    gpus_per_node: int = 1
    gpu_type: str | None = None
    max_attempts: int = 3
    max_file_bytes: int = 512 * 1024 * 1024
    # operator defaults for TrainingParams fields the API has no name for (e.g. max_length)
    params: dict[str, Any] = field(default_factory=dict)
    # the adapter every DPO job trains (``dpo_lora``); None: full-parameter DPO
    dpo_lora: LoraParams | None = None

    @property
    def resources(self) -> Resources:
        return Resources(nodes=self.nodes, gpus_per_node=self.gpus_per_node, gpu_type=self.gpu_type)


class Gateway:
    def __init__(self, client: Client, files: FileStore, config: GatewayConfig) -> None:
        self.client = client
        self.files = files
        self.config = config

    # -- jobs ----------------------------------------------------------------------------------------------
    async def _dataset(self, namespace: str, file_id: str, kind: JobKind, param: str) -> tuple[FileRecord, Any]:
        record = await self.files.get(namespace, file_id, param)
        if record.status != "processed":
            raise bad_request(
                f"{param} {file_id} failed its check on upload ({record.status_details}): fix the file and upload "
                "it again.",
                param,
                "invalid_file",
            )
        ref = record.datasets.get(kind.value)
        if ref is None:
            held = ", ".join(f"{METHOD_OF[JobKind(k)]} ({f})" for k, f in record.formats.items())
            raise bad_request(
                f"{param} {file_id} holds lines for {held}, which a {METHOD_OF[kind]} job cannot train on: "
                f"{FORMAT_HINT[kind]}.",
                param,
                "invalid_file_format",
            )
        return record, ref

    async def create_job(
        self, namespace: str, req: JobRequest, idempotency_key: str | None = None, body_digest: str = ""
    ) -> dict[str, Any]:
        """Queue the job. With an ``Idempotency-Key`` the job id derives from it, so a retried request
        returns the job the first one made instead of starting another."""
        job_id = f"ftjob-{uuid.uuid4().hex[:24]}"
        if idempotency_key:
            job_id = "ftjob-" + hashlib.sha256(f"{namespace}\0{idempotency_key}".encode()).hexdigest()[:24]
            existing = await self._existing(job_id)
            if existing is not None:
                if existing.spec.labels.get(objects.REQUEST) != body_digest:
                    raise conflict(
                        f"Idempotency-Key {idempotency_key!r} was used for a different request (job {job_id}): "
                        "send a new key for a new job, or the same request to get that job again.",
                        "idempotency_key_reused",
                    )
                return objects.job_object(existing)
        _, train = await self._dataset(namespace, req.training_file, req.kind, "training_file")
        evaluation = None
        if req.validation_file:
            _, evaluation = await self._dataset(namespace, req.validation_file, req.kind, "validation_file")
        resources = self.config.resources
        resolved = resolve_hyperparameters(req.kind, req.hyperparameters, train.rows)
        values = {
            **self.config.params,
            **training_values(req.kind, resolved, resources.nodes * resources.gpus_per_node),
            "seed": req.seed if req.seed is not None else secrets.randbelow(2**31),
        }
        try:
            params = msgspec.convert(values, TrainingParams)
        except msgspec.ValidationError as exc:
            raise bad_request(f"the hyperparameters cannot be trained with: {exc}.", "method") from None
        params = dpo_lora.apply(req.kind, params, self.config.dpo_lora)
        labels = {
            "submitted_via": "openai",
            objects.NAMESPACE: namespace,
            objects.TRAINING_FILE: req.training_file,
            objects.HYPERPARAMETERS: json.dumps(resolved),
        }
        if req.validation_file:
            labels[objects.VALIDATION_FILE] = req.validation_file
        if req.suffix:
            labels[objects.SUFFIX] = req.suffix
        if req.metadata:
            labels[objects.METADATA] = json.dumps(req.metadata)
        if idempotency_key:
            labels[objects.REQUEST] = body_digest
        spec = JobSpec(
            job_id=job_id,
            kind=req.kind,
            model=req.model,
            dataset=train,
            eval_dataset=evaluation,
            params=params,
            resources=resources,
            max_attempts=self.config.max_attempts,
            labels=labels,
        )
        try:
            validate_spec(spec)
        except BadMessage as exc:
            hint = ": name the model by its real path or a Hugging Face id" if str(exc).startswith("model") else ""
            raise bad_request(f"{exc}{hint}.", "model" if str(exc).startswith("model") else None) from None
        try:
            job = await self.client.submit(spec)
        except Unschedulable as exc:
            raise bad_request(str(exc), None, "no_capacity") from None
        except Exception as exc:
            await self._withdraw(spec.job_id, exc)
            raise unavailable(f"the job could not be queued on NATS ({exc}); nothing was started: try again.") from None
        log.info("queued %s job %s for %s", req.kind.value, spec.job_id, namespace)
        return objects.job_object(await job.status())

    async def _existing(self, job_id: str) -> JobRecord | None:
        try:
            return await self.client.job(job_id).status()
        except JobNotFound:
            return None

    async def _withdraw(self, job_id: str, exc: Exception) -> None:
        """A submission that failed half way: cancel whatever record it left, so no job is left queued unseen."""
        try:
            await self.client.cancel(job_id, reason=f"could not be queued: {exc}")
        except (JobNotFound, JobAlreadyFinished):
            pass
        except Exception as again:
            log.error("job %s: could not withdraw a half-made submission: %s", job_id, again)

    async def record(self, namespace: str, job_id: str) -> JobRecord:
        if not valid_job_id(job_id):
            raise not_found("fine-tuning job", job_id)
        try:
            record = await self.client.job(job_id).status()
        except JobNotFound:
            raise not_found("fine-tuning job", job_id) from None
        if record.spec.labels.get(objects.NAMESPACE) != namespace:
            raise not_found("fine-tuning job", job_id)
        return record

    async def list_jobs(self, namespace: str, metadata: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for record in await self.client.list_jobs():
            labels = record.spec.labels
            if labels.get(objects.NAMESPACE) != namespace:
                continue
            if metadata:
                have = json.loads(labels.get(objects.METADATA, "{}"))
                if any(have.get(k) != v for k, v in metadata.items()):
                    continue
            out.append(record)
        out.sort(key=lambda r: (r.submitted_at, r.job_id), reverse=True)
        return [objects.job_object(r) for r in out]

    async def cancel(self, namespace: str, job_id: str) -> dict[str, Any]:
        record = await self.record(namespace, job_id)
        try:
            record = await self.client.cancel(job_id, reason="cancelled through the OpenAI API")
        except JobAlreadyFinished as exc:
            raise conflict(
                f"Job {job_id} already ended as {objects.status(exc.record)}: there is nothing to cancel.",
                "job_already_finished",
            ) from None
        return objects.job_object(record)

    async def pause(self, namespace: str, job_id: str) -> dict[str, Any]:
        """Pause: a queued job leaves the queue; a running one saves a checkpoint at its next step and stops."""
        await self.record(namespace, job_id)
        try:
            record = await self.client.job(job_id).pause()
        except CannotPause as exc:
            raise conflict(f"{exc}.", "job_not_pausable") from None
        return objects.job_object(record)

    async def resume(self, namespace: str, job_id: str) -> dict[str, Any]:
        """Queue a paused job again; an agent continues it from the checkpoint it stopped at."""
        await self.record(namespace, job_id)
        try:
            record = await self.client.job(job_id).resume()
        except CannotPause as exc:
            raise conflict(f"{exc}.", "job_not_paused") from None
        return objects.job_object(record)

    async def events_page(self, namespace: str, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        """A page of the job's event history from the events stream, newest first (OpenAI's order)."""
        record = await self.record(namespace, job_id)
        base = self.client.names.job_events(record.spec)
        names = self.client.names
        if not base.startswith(f"{names.prefix}.events."):  # a custom subject outside the stream: no history
            return objects.page([], None, limit)
        before = None
        if after is not None:
            before = await self._cursor(names.events_stream, base, after)
        msgs, has_more = await newest_page(self.client.js, names.events_stream, f"{base}.>", limit, before)
        data = []
        for msg in msgs:
            try:
                data.append(objects.event_object(msg.metadata.sequence.stream, decode(msg.data, Event)))
            except BadMessage as exc:
                log.warning("skipping event on %s: %s", msg.subject, exc)
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    async def _cursor(self, stream: str, base: str, after: str) -> int:
        """The stream sequence an ``after`` event id names, once it is known to be one of this job's events."""
        wrong = bad_request(
            f"after {after!r} is not an event id of this job: pass the id of the last event of the previous page.",
            "after",
        )
        digits = after.removeprefix("ftevent-")
        if not after.startswith("ftevent-") or not digits.isdigit() or int(digits) < 1:
            raise wrong
        try:
            msg = await self.client.js.get_msg(stream, int(digits))
        except (NotFoundError, BadRequestError):
            raise wrong from None
        if not (msg.subject or "").startswith(base + "."):
            raise wrong
        return int(digits)

    async def checkpoints(self, namespace: str, job_id: str) -> list[dict[str, Any]]:
        return objects.checkpoint_objects(await self.record(namespace, job_id))


def nats_unavailable(exc: Exception) -> APIError:
    return unavailable(f"NATS is out of reach ({type(exc).__name__}: {exc}): try again when it is back.")
