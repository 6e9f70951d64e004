"""JetStream's MAX_DELIVERIES advisory: a submission delivered ``max_deliver`` times is never delivered again.

It stays in the work-queue stream, unseen, unless someone acts. Every agent
listens in one queue group (so one of them handles each advisory): the job
is failed with the reason, unless its owner is alive and still running it
(the owner settles the message itself), and the message is deleted so the
queue holds nothing that no one will ever take.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from trl_nats.messages import JobRecord, JobSpec, JobState, StatusEvent, decode, valid_job_id
from trl_nats.store import IllegalTransition, JobNotFound, JobStore

log = logging.getLogger(__name__)

QUEUE_GROUP = "trl-nats-agents"


def advisory_subject(stream: str) -> str:
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"


class MaxDeliveriesWatcher:
    def __init__(
        self,
        js,
        store: JobStore,
        stream: str,
        *,
        owner_alive: Callable[[JobRecord], Awaitable[bool]],
        emit: Callable[[JobRecord, StatusEvent], None],
        agent_id: str,
    ) -> None:
        self.js = js
        self.store = store
        self.stream = stream
        self.owner_alive = owner_alive
        self.emit = emit
        self.agent_id = agent_id
        self.handled = 0

    async def on_advisory(self, msg: Msg) -> None:
        try:
            adv = json.loads(msg.data)
            seq = int(adv["stream_seq"])
            deliveries = int(adv.get("deliveries", 0))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed max-deliveries advisory: %s", exc)
            return
        try:
            raw = await self.js.get_msg(self.stream, seq)
        except Exception as exc:  # already deleted (acked, or another agent handled it)
            log.info("max-deliveries advisory for %s seq %d: message gone (%s)", self.stream, seq, exc)
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
                    record = await self.store.transition(
                        job_id, JobState.failed, change=lambda r: {"owner": None, "error": reason}
                    )
                    self.emit(
                        record,
                        StatusEvent(
                            job_id=job_id,
                            attempt=record.attempt,
                            state=JobState.failed,
                            agent=self.agent_id,
                            message=reason,
                        ),
                    )
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
