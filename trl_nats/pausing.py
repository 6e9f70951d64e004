"""Pause and resume a job, from the client side.

- A queued job (``scheduled``) is paused at once: it leaves the queue (an agent that meets its
  message drops it) and holds nothing.
- A running job becomes ``pausing``; its agent notices within a second (the record is the
  durable request), makes rank 0 save a checkpoint at the next step boundary, stores it in the
  artifact store, stops every rank, releases the GPUs and writes ``paused``.
- Resume moves ``paused`` back to ``scheduled`` and queues the job again under a fresh message
  id; whichever agent claims it continues from the stored checkpoint (optimizer, scheduler,
  RNG state and data position included).
- Cancel works from ``paused``.

The legal moves live in ``trl_nats/store.py``; the agent's half in ``trl_nats_agent/pausing.py``.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from nats.js import JetStreamContext

from trl_nats.messages import JobRecord, JobState, encode
from trl_nats.publishing import publish_once
from trl_nats.settings import NatsSettings
from trl_nats.store import IllegalTransition, JobStore
from trl_nats.subjects import Names

S = JobState


class Client(Protocol):
    """What pausing needs of ``trl_nats.client.Client`` (which calls these functions)."""

    store: JobStore
    js: JetStreamContext
    names: Names
    settings: NatsSettings

    async def _publish_status(self, record: JobRecord, state: JobState, message: str, *, msg_suffix: str) -> None: ...


class CannotPause(ValueError):
    """The job is in a state that cannot be paused or resumed; ``str()`` says why and what to do."""


async def pause(client: Client, job_id: str) -> JobRecord:
    """Pause ``job_id``; returns its record (``paused`` if it was queued, ``pausing`` if it runs)."""
    for _ in range(5):  # the job may change state between our read and our write: decide again
        record = await client.store.get(job_id)
        if record.state in (S.paused, S.pausing):
            return record
        if record.state.terminal:
            raise CannotPause(f"job {job_id} already ended as {record.state.value}: there is nothing to pause")
        try:
            if record.state is S.scheduled:
                record = await client.store.transition(job_id, S.paused, allowed_from=frozenset({S.scheduled}))
                await client._publish_status(
                    record,
                    S.paused,
                    "paused while queued: out of the queue until resumed",
                    msg_suffix=_suffix("paused"),
                )
                return record
            return await client.store.transition(job_id, S.pausing, allowed_from=frozenset({S.in_progress}))
        except IllegalTransition:
            continue
    raise CannotPause(f"job {job_id} kept changing state while pausing it: try again")


async def resume(client: Client, job_id: str) -> JobRecord:
    """Queue a paused job again; any agent that can run it continues from its stored checkpoint."""
    record = await client.store.get(job_id)
    if record.state is S.pausing:
        raise CannotPause(f"job {job_id} is still pausing (saving its checkpoint): resume it once it is paused")
    if record.state is not S.paused:
        raise CannotPause(f"job {job_id} is {record.state.value}, not paused: only a paused job can be resumed")
    try:
        record = await client.store.transition(
            job_id, S.scheduled, allowed_from=frozenset({S.paused}), change=lambda r: {"error": None}
        )
    except IllegalTransition as exc:
        raise CannotPause(f"job {job_id} is {exc.record.state.value} now, not paused") from None
    # a fresh message id: the submission's own id (the job id) is still in JetStream's de-duplication window
    await publish_once(
        client.js,
        client.names.submit(record.spec.resources.queue),
        encode(record.spec),
        f"{job_id}.resume-{uuid.uuid4().hex[:12]}",
        timeout=client.settings.request_timeout,
    )
    latest = record.latest_checkpoint
    where = f"from checkpoint {latest.step}" if latest and latest.location else "from the start (no stored checkpoint)"
    await client._publish_status(
        record, S.scheduled, f"resumed: queued again, continues {where}", msg_suffix=_suffix("resumed")
    )
    return record


def _suffix(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:12]}"  # each pause/resume is its own event (ids must not repeat)
