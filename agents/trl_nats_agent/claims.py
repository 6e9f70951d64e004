"""Taking work: fetch from the pools this node can serve, decode and check each submission, claim it.

A pool is fetched only while the node has the free GPUs for it. A submission is
decoded and checked against the operator's policy (a poison one is terminated and
its job failed with the reason); a single-node job is then claimed by
compare-and-set on its record (owner, attempt) and handed to ``start``; a
multi-node one goes to ``lead_gang``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import FetchTimeoutError

from trl_nats.events import fail_job
from trl_nats.messages import (
    Allocation,
    BadMessage,
    JobRecord,
    JobSpec,
    JobState,
    decode,
    valid_job_id,
    validate_spec,
)
from trl_nats.settings import NatsSettings
from trl_nats.store import IllegalTransition, JobNotFound, JobStore, LostClaim
from trl_nats.topology import ensure_pool_consumer
from trl_nats_agent import pausing
from trl_nats_agent.job import RunningJob
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.node import Node
from trl_nats_agent.policy import AgentPolicy
from trl_nats_agent.reporting import JobEvents
from trl_nats_agent.workspace import Workspace

log = logging.getLogger("trl_nats_agent")


class Claims:
    def __init__(
        self,
        node: Node,
        nats: NatsSettings,
        js,
        store: JobStore,
        policy: AgentPolicy,
        workspace: Workspace,
        events: JobEvents,
        metrics: AgentMetrics,
        *,
        stopping: asyncio.Event,
        running: dict[str, RunningJob],
        start: Callable[[RunningJob], None],
        lead_gang: Callable[[Msg, JobSpec, list[int]], None],
    ) -> None:
        self.node = node
        self.cfg = node.cfg
        self.id = node.id
        self.nats = nats
        self.js = js
        self.store = store
        self.policy = policy
        self.workspace = workspace
        self.events = events
        self.metrics = metrics
        self.stopping = stopping
        self.running = running
        self.start = start
        self.lead_gang = lead_gang

    async def fetch_loop(self, pool: str, need: int, max_deliver: int | None = None) -> None:
        """Fetch from ``pool`` only while this node has ``need`` free GPUs."""
        durable = await ensure_pool_consumer(self.js, self.nats, pool, max_deliver=max_deliver)
        sub = await self.js.pull_subscribe_bind(durable, self.nats.names.jobs_stream)
        while not self.stopping.is_set():
            if len(self.node.free) < need:
                self.node.capacity_changed.clear()
                await self.node.capacity_changed.wait()
                continue
            try:
                msgs = await sub.fetch(1, timeout=self.cfg.fetch_timeout_s)
            except (FetchTimeoutError, NatsTimeout, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker restart, consumer being recreated
                log.info("fetch from %s failed (%s); retrying", pool, exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await ensure_pool_consumer(self.js, self.nats, pool, max_deliver=max_deliver)
                continue
            fetched_at = time.monotonic()
            for msg in msgs:
                await self.on_submission(msg, need, fetched_at)

    async def on_submission(self, msg: Msg, need: int, fetched_at: float | None = None) -> None:
        try:
            spec = validate_spec(decode(msg.data, JobSpec))
            self.policy.check(spec)
        except BadMessage as exc:
            await self.reject(msg, str(exc))
            return
        if len(self.node.free) < need or self.stopping.is_set():
            # another pool's fetch took the room meanwhile: let another agent have it
            await msg.nak()
            return
        gpus = self.node.reserve(need)
        if spec.resources.nodes > 1:
            self.lead_gang(msg, spec, gpus)
            return
        try:
            claimed = await self._claim(msg, spec, gpus, fetched_at)
        except Exception:
            log.exception("claim of %s failed", spec.job_id)
            claimed = None
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.cfg.retry_backoff_s)
        if claimed is None:
            self.node.release(gpus)
            return
        self.start(claimed)

    async def reject(self, msg: Msg, reason: str) -> None:
        """Terminate a poison submission; mark its record failed if it has a usable id."""
        log.error("rejecting submission on %s: %s", msg.subject, reason)
        with contextlib.suppress(Exception):
            await msg.term()
        job_id = None
        with contextlib.suppress(Exception):
            raw = json.loads(msg.data)
            if isinstance(raw, dict) and isinstance(raw.get("job_id"), str) and valid_job_id(raw["job_id"]):
                job_id = raw["job_id"]
        if job_id is None:
            return
        with contextlib.suppress(JobNotFound, IllegalTransition, BadMessage):
            await fail_job(
                self.store,
                self.events.publisher.put,
                self.nats.names,
                job_id,
                f"rejected: {reason}",
                agent=self.id,
                allowed_from=frozenset({JobState.scheduled}),
            )

    async def check_claimable(self, msg: Msg, spec: JobSpec) -> JobRecord | None:
        """The job's record if this delivery may be claimed; otherwise settle the message and return None."""
        try:
            record = await self.store.get(spec.job_id)
        except JobNotFound:
            # published straight on NATS (e.g. `nats pub`), not through the client: adopt it
            record, _ = await self.store.create(JobRecord(job_id=spec.job_id, spec=spec))
        if record.state.terminal or pausing.drop_delivery(record):
            await msg.ack()  # cancelled or paused while waiting, or a duplicate of a finished job
            return None
        running = record.state in (JobState.in_progress, JobState.pausing)
        if running and record.owner == self.id and spec.job_id in self.running:
            # our own job, redelivered while we finish it (its final write rode out an election): not a new run
            await msg.nak(delay=self.nats.ack_wait_s)
            return None
        if running and record.owner != self.id:
            if await self.node.owner_alive(record):
                # redelivered while its owner still runs it (e.g. broker restart): not ours
                await msg.nak(delay=self.nats.ack_wait_s)
                return None
            log.warning("job %s: owner %s is gone; taking over", spec.job_id, record.owner)
        if record.attempt >= spec.max_attempts:
            await self._finish_exhausted(record)
            await msg.term()
            return None
        return record

    async def _claim(
        self, msg: Msg, spec: JobSpec, gpus: list[int], fetched_at: float | None = None
    ) -> RunningJob | None:
        record = await self.check_claimable(msg, spec)
        if record is None:
            return None
        alloc = Allocation(agent=self.id, node=self.cfg.node, gpus=gpus, gpu_type=self.node.gpu_type)
        try:
            record = await self.store.claim(record, self.id, [alloc])
        except (LostClaim, IllegalTransition) as exc:
            log.info("job %s not claimed: %s", spec.job_id, exc)
            await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        attempt = record.attempt
        job = self.workspace.new_job(record.spec, attempt, msg, gpus, run=record.runs)
        self.running[spec.job_id] = job
        self.metrics.claimed(record, fetched_at)
        log.info("claimed %s attempt %d on %s %s", spec.job_id, attempt, self.cfg.device, gpus)
        return job

    async def _finish_exhausted(self, record: JobRecord) -> None:
        reason = f"gave up after {record.attempt} attempt(s)" + (
            f"; last error: {record.error}" if record.error else ""
        )
        with contextlib.suppress(IllegalTransition, JobNotFound):
            await fail_job(self.store, self.events.publisher.put, self.nats.names, record.job_id, reason, agent=self.id)
