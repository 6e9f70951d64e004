"""Submissions JetStream will never deliver again (``max_deliver`` reached) are failed and removed.

Such a message stays in the work-queue stream, unseen, unless someone acts.
JetStream announces it with a MAX_DELIVERIES advisory, a plain NATS message:
every agent listens in one queue group (on ``Names.jobs_max_deliveries``), so one of them handles each. An
advisory sent while no agent is connected is lost (a stream does not capture
this advisory on nats-server 2.15), so each agent also sweeps at start and
then every few minutes: a pool consumer with nothing pending and nothing in
flight that still has messages it delivered in the stream has given up on
them. Handling one: the job is failed with the reason, unless its owner is
alive and still running it (the owner settles the message itself), and the
message is deleted so the queue holds nothing that no one will ever take.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from trl_nats.events import EventSink, fail_job
from trl_nats.messages import JobRecord, JobSpec, JobState, decode, valid_job_id
from trl_nats.store import IllegalTransition, JobNotFound, JobStore
from trl_nats.subjects import Names

log = logging.getLogger(__name__)

QUEUE_GROUP = "trl-nats-agents"
SWEEP_EVERY_S = 300.0


class MaxDeliveriesWatcher:
    def __init__(
        self,
        js,
        store: JobStore,
        names: Names,
        *,
        owner_alive: Callable[[JobRecord], Awaitable[bool]],
        sink: EventSink,
        agent_id: str,
    ) -> None:
        self.js = js
        self.store = store
        self.names = names
        self.stream = names.jobs_stream
        self.owner_alive = owner_alive
        self.sink = sink  # the buffered event publisher's put
        self.agent_id = agent_id
        self.handled = 0

    async def sweep_forever(self, stopping: asyncio.Event, every: float = SWEEP_EVERY_S) -> None:
        while not stopping.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # broker restarting: next round
                log.info("sweep of %s not done: %s", self.stream, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)

    async def sweep(self) -> int:
        """Handle messages that a pool consumer with nothing pending or in flight delivered and still holds."""
        found = 0
        for info in await self.js.consumers_info(self.stream):
            if info.num_pending or info.num_ack_pending or not info.config.filter_subject:
                continue
            last = info.delivered.stream_seq if info.delivered else 0
            seq = 1
            while seq <= last:
                try:
                    raw = await self.js.get_msg(self.stream, seq=seq, subject=info.config.filter_subject, next=True)
                except Exception:  # none left on this subject
                    break
                if raw.seq is None or raw.seq > last:
                    break
                await self.handle(raw.seq, info.config.max_deliver or 0)
                found += 1
                seq = raw.seq + 1
        return found

    async def on_advisory(self, msg: Msg) -> None:
        try:
            adv = json.loads(msg.data)
            seq = int(adv["stream_seq"])
            deliveries = int(adv.get("deliveries", 0))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed max-deliveries advisory: %s", exc)
            return
        try:
            await self.handle(seq, deliveries)
        except Exception as exc:  # the sweep will find it
            log.warning("max-deliveries advisory for seq %d not handled: %s", seq, exc)

    async def handle(self, seq: int, deliveries: int) -> None:
        try:
            raw = await self.js.get_msg(self.stream, seq)
        except Exception as exc:  # already deleted (acked, or another agent handled it)
            log.info("max-deliveries for %s seq %d: message gone (%s)", self.stream, seq, exc)
            return
        job_id = _job_id(raw.data)
        reason = (
            f"JetStream delivered the submission {deliveries} times without an agent finishing it "
            "(the consumer's max_deliver): giving up"
        )
        if job_id is not None:
            try:
                record = await self.store.get(job_id)
            except JobNotFound:
                record = None
            if record is not None and record.state is JobState.in_progress and await self.owner_alive(record):
                log.info("job %s hit max deliveries but its owner %s runs it: leaving it", job_id, record.owner)
                return
            if record is not None and not record.state.terminal:
                with contextlib.suppress(IllegalTransition, JobNotFound):
                    await fail_job(self.store, self.sink, self.names, job_id, reason, agent=self.agent_id)
        log.error("submission %s (seq %d): %s; removing it from the queue", job_id or "?", seq, reason)
        with contextlib.suppress(Exception):
            await self.js.delete_msg(self.stream, seq)
        self.handled += 1


def _job_id(data: bytes) -> str | None:
    try:
        return decode(data, JobSpec).job_id
    except Exception:
        pass
    with contextlib.suppress(Exception):
        raw = json.loads(data)
        if isinstance(raw, dict) and isinstance(raw.get("job_id"), str) and valid_job_id(raw["job_id"]):
            return raw["job_id"]
    return None
