"""The async client: submit jobs, follow them, cancel them, look at the fleet.

    async with await Client.connect(settings) as client:
        ref = await client.upload_dataset(rows)
        job = await client.submit(JobSpec(job_id="j1", model="/models/tiny", dataset=ref))
        async for event in job.events():
            ...
        record = await job.wait()

Everything is read from NATS (KV and streams), so any process can pick up a
job by id: the CLI, the Llama Stack provider, a script.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import anyio
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy
from nats.js.errors import ObjectNotFoundError

from trl_nats import pausing, retry
from trl_nats.artifacts.jobs import ArtifactsMixin
from trl_nats.events import publish_event
from trl_nats.fleet import FLEET_CACHE_S, Unschedulable, unschedulable_reason
from trl_nats.messages import (
    AgentRecord,
    BadMessage,
    CancelRequest,
    DatasetRef,
    Event,
    GangRecord,
    JobRecord,
    JobSpec,
    JobState,
    StatusEvent,
    decode,
    encode,
    validate_spec,
)
from trl_nats.publishing import publish_once
from trl_nats.rows import encode_rows
from trl_nats.settings import NatsSettings, connect, permission_denied
from trl_nats.store import IllegalTransition, JobNotFound, JobStore
from trl_nats.topology import Topology, bucket_keys, ensure_topology_retrying

log = logging.getLogger(__name__)


class JobAlreadyFinished(ValueError):
    def __init__(self, record: JobRecord) -> None:
        super().__init__(f"job {record.job_id} already ended as {record.state.value}: there is nothing to cancel")
        self.record = record


class Client(ArtifactsMixin):  # artifacts(), pull(), prune(): trl_nats/artifacts/jobs.py
    def __init__(self, nc: NATS, settings: NatsSettings, topo: Topology) -> None:
        self.nc = nc
        self.settings = settings
        self.names = settings.names
        self.topo = topo
        self.js = topo.js
        self.store = JobStore(topo.jobs, write_bound_s=settings.write_retry_s)
        self._fleet_cache: tuple[float, list[AgentRecord]] | None = None

    @classmethod
    async def connect(cls, settings: NatsSettings | None = None, *, name: str = "trl-nats-client") -> Client:
        settings = settings or NatsSettings.from_env()
        nc = await connect(settings, name=name)
        try:
            js = nc.jetstream(timeout=settings.request_timeout)
            topo = await ensure_topology_retrying(js, settings)
        except BaseException:
            await nc.close()
            raise
        return cls(nc, settings, topo)

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- datasets --------------------------------------------------------------
    async def upload_dataset(self, rows: Iterable[Mapping[str, Any]] | bytes) -> DatasetRef:
        """Upload rows (or ready JSON-lines bytes) content-addressed; an existing copy is reused."""
        if isinstance(rows, bytes | bytearray):
            data = bytes(rows)
            count = sum(1 for line in data.splitlines() if line.strip())
        else:
            data, count = encode_rows(rows)
        digest = hashlib.sha256(data).hexdigest()
        name = f"sha256-{digest}"
        try:
            info = await self.topo.datasets.get_info(name)
            if info.size == len(data) and not info.deleted:
                return DatasetRef(object=name, sha256=digest, rows=count, bytes=len(data))
        except ObjectNotFoundError:
            pass
        await retry.obj_put(self.topo.datasets, name, data, what=f"dataset {name}", bound_s=self.settings.write_retry_s)
        return DatasetRef(object=name, sha256=digest, rows=count, bytes=len(data))

    async def upload_dataset_file(self, path: str | os.PathLike[str]) -> DatasetRef:
        with open(path, "rb") as f:
            return await self.upload_dataset(f.read())

    # -- jobs ------------------------------------------------------------------
    async def submit(self, spec: JobSpec, *, check_fleet: bool = True) -> Job:
        """Queue ``spec``. Idempotent on ``spec.job_id``: a resubmit returns the existing job.

        With ``check_fleet``, a new job that no agent heartbeating now could ever run raises
        :class:`Unschedulable` instead of waiting forever. When no agent is up at all the job is
        queued: agents may be starting (a deployment comes up, a node reboots) and the queue is durable.
        """
        validate_spec(spec)
        # the fit check reads the fleet: ride out an election of the agents bucket as a write would
        bound = self.settings.write_retry_s
        if check_fleet and not await retry.retry_write(lambda: self._exists(spec.job_id), "job lookup", bound_s=bound):
            fleet = await retry.retry_write(self._fleet, "the fleet check (reading the agents)", bound_s=bound)
            reason = unschedulable_reason(spec.resources, fleet)
            if reason:
                raise Unschedulable(reason)
        seen = len(getattr(self.nc, "trl_violations", ()))
        try:
            return await self._submit(spec)
        except Exception as exc:
            denied = permission_denied(self.nc, f"submit job {spec.job_id}", seen)
            if denied:
                raise denied from exc
            raise

    async def _submit(self, spec: JobSpec) -> Job:
        try:
            record, created = await self.store.create(JobRecord(job_id=spec.job_id, spec=spec))
        except retry.NotWritten as exc:
            raise retry.NotWritten(
                f"the record of job {spec.job_id}",
                exc.waited_s,
                exc.cause,
                "Nothing was queued, so this job will not run. Submitting the same job id again is safe: it never "
                "starts a second job (and if the record did land after all, `trl-nats jobs` lists it as "
                "scheduled until you do).",
            ) from exc
        if not created and record.state is not JobState.scheduled:
            return Job(self, spec.job_id)
        payload = encode(record.spec)
        # Same message id every time: JetStream drops a duplicate within its window.
        try:
            await publish_once(
                self.js,
                self.names.submit(record.spec.resources.queue),
                payload,
                record.job_id,
                timeout=self.settings.request_timeout,
                bound_s=self.settings.write_retry_s,
            )
        except retry.NotWritten as exc:
            raise retry.NotWritten(
                f"the queue message of job {spec.job_id}",
                exc.waited_s,
                exc.cause,
                f"Its record exists (scheduled) but no agent runs it until it is queued: submit the same job id "
                f"({spec.job_id}) again to queue it, once.",
            ) from exc
        if created:
            await self._publish_status(record, JobState.scheduled, "submitted", msg_suffix="submitted")
        return Job(self, spec.job_id)

    async def _fleet(self) -> list[AgentRecord]:
        """The agents for the fit check, read at most every FLEET_CACHE_S: a burst of submissions
        should not read every heartbeat for every job."""
        t = time.monotonic()
        if self._fleet_cache is None or t - self._fleet_cache[0] > FLEET_CACHE_S:
            self._fleet_cache = (t, await self.list_agents())
        return self._fleet_cache[1]

    async def _exists(self, job_id: str) -> bool:
        try:
            await self.store.get(job_id)
            return True
        except JobNotFound:
            return False

    def job(self, job_id: str) -> Job:
        return Job(self, job_id)

    async def list_gangs(self) -> list[GangRecord]:
        """Multi-node gangs forming or running now (see docs/scheduling.md)."""
        keys = await bucket_keys(self.topo.gangs)
        gangs = []
        for key in keys:
            try:
                entry = await self.topo.gangs.get(key)
            except Exception:  # deleted between keys() and get()
                continue
            if entry.value:
                try:
                    gangs.append(decode(entry.value, GangRecord))
                except BadMessage as exc:
                    log.warning("ignoring gang record %s: %s", key, exc)
        return gangs

    async def queue_positions(self, records: list[JobRecord] | None = None) -> dict[str, tuple[str, int]]:
        """For each waiting job: (its queue, 1-based position in it by submission order).

        JetStream delivers a pool's messages in publish order; a retried job goes back with a
        delay, so this is the order agents will meet the jobs in, give or take retries.
        """
        records = await self.list_jobs() if records is None else records
        positions: dict[str, tuple[str, int]] = {}
        counts: dict[str, int] = {}
        for r in sorted(records, key=lambda r: (r.submitted_at, r.job_id)):
            if r.state is JobState.scheduled:
                queue = r.spec.resources.queue
                counts[queue] = counts.get(queue, 0) + 1
                positions[r.job_id] = (queue, counts[queue])
        return positions

    async def list_jobs(self, state: JobState | None = None) -> list[JobRecord]:
        records = await self.store.list()
        return [r for r in records if state is None or r.state is state]

    async def list_agents(self) -> list[AgentRecord]:
        kv = self.topo.agents
        keys = await bucket_keys(kv)
        agents = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except Exception:  # expired between keys() and get()
                continue
            if entry.value:
                try:
                    agents.append(decode(entry.value, AgentRecord))
                except BadMessage as exc:
                    log.warning("ignoring agent record %s: %s", key, exc)
        agents.sort(key=lambda a: a.agent_id)
        return agents

    async def cancel(self, job_id: str, reason: str = "cancelled by user") -> JobRecord:
        """Cancel a job: at once if it is waiting, else ask its agent to stop it.

        The record's ``cancel_requested`` flag is the durable request; the
        control message only makes the agent act sooner.
        """
        seen = len(getattr(self.nc, "trl_violations", ()))
        try:
            return await self._cancel(job_id, reason)
        except Exception as exc:
            denied = permission_denied(self.nc, f"cancel job {job_id}", seen)
            if denied:
                raise denied from exc
            raise

    async def _cancel(self, job_id: str, reason: str) -> JobRecord:
        record = await self.store.get(job_id)
        if record.state.terminal:
            raise JobAlreadyFinished(record)
        if record.state in (JobState.scheduled, JobState.paused):
            try:
                record = await self.store.transition(
                    job_id,
                    JobState.cancelled,
                    allowed_from=frozenset({JobState.scheduled, JobState.paused}),
                    change=lambda r: {"cancel_requested": True, "error": reason},
                )
                await self._publish_status(record, JobState.cancelled, reason, msg_suffix="cancelled")
                return record
            except IllegalTransition as exc:
                if exc.record.state.terminal:
                    raise JobAlreadyFinished(exc.record) from None
                # claimed meanwhile: fall through and ask its agent
        try:
            record = await self.store.transition(
                job_id,
                JobState.in_progress,  # stays pausing if it is (see JobStore.transition)
                allowed_from=frozenset({JobState.in_progress, JobState.pausing}),
                change=lambda r: {"cancel_requested": True},
            )
        except IllegalTransition as exc:
            if exc.record.state.terminal:
                raise JobAlreadyFinished(exc.record) from None
            raise
        if record.owner:
            await self.nc.publish(self.names.control(record.owner), encode(CancelRequest(job_id=job_id, reason=reason)))
        return record

    async def _publish_status(self, record: JobRecord, state: JobState, message: str, *, msg_suffix: str) -> None:
        event = StatusEvent(job_id=record.job_id, attempt=record.attempt, state=state, message=message)
        await publish_event(
            self.js,
            self.names,
            record.spec,
            event,
            msg_id=f"{record.job_id}.{msg_suffix}",
            timeout=self.settings.request_timeout,
        )


class Job:
    """A handle on one job; holds only the id, reads everything from NATS."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.id = job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    async def status(self) -> JobRecord:
        return await self.client.store.get(self.id)

    async def cancel(self, reason: str = "cancelled by user") -> JobRecord:
        return await self.client.cancel(self.id, reason)

    async def pause(self) -> JobRecord:
        """Pause: a queued job leaves the queue; a running one saves a checkpoint at its next step and stops."""
        return await pausing.pause(self.client, self.id)

    async def resume(self) -> JobRecord:
        """Queue a paused job again; any agent continues it from its stored checkpoint."""
        return await pausing.resume(self.client, self.id)

    async def events(self, from_start: bool = True, until_done: bool = True) -> AsyncIterator[Event]:
        """The job's events: its whole history first (``from_start``), then live ones.

        Stops after the final status event when ``until_done``. A malformed
        event is logged and skipped, never raised.
        """
        record = await self.status()
        c = self.client
        base = c.names.job_events(record.spec)
        subject = f"{base}.>"
        if base.startswith(c.names.prefix + ".events."):
            policy = DeliverPolicy.ALL if from_start else DeliverPolicy.NEW
            sub = await c.js.subscribe(subject, ordered_consumer=True, deliver_policy=policy)
        else:  # a custom subject outside the events stream: live only
            sub = await c.nc.subscribe(subject)
        try:
            async for msg in sub.messages:
                try:
                    event = decode(msg.data, Event)
                except BadMessage as exc:
                    log.warning("skipping event on %s: %s", msg.subject, exc)
                    continue
                yield event
                if until_done and isinstance(event, StatusEvent) and event.state.terminal:
                    return
        finally:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def wait(self, timeout: float | None = None, poll: float = 2.0) -> JobRecord:
        """Wait for the job to end; returns its final record. Raises TimeoutError."""
        with anyio.fail_after(timeout):
            while True:
                record = await self.status()
                if record.state.terminal:
                    return record
                # follow live events, but re-read the record now and then: it is the authority
                with anyio.move_on_after(poll):
                    async for event in self.events(from_start=False):
                        if isinstance(event, StatusEvent) and event.state.terminal:
                            break
