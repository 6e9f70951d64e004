"""A job's events on NATS: which subject each goes to, its message id, and the failed-job rule.

Every writer of job events (the client for a cancel before a claim, the node agent for
everything after one) goes through here, so an event's subject is derived in one place
(:meth:`Names.job_events`, ``<base>.<kind>``) and "mark the job failed and tell its
watchers" is one function, :func:`fail_job`.

Lives here: subjects and ids of job events, the status event of a state change.
Does not live here: the retrying/buffered publishers (``publishing.py``), state rules (``store.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trl_nats.messages import Event, JobRecord, JobSpec, JobState, StatusEvent, encode
from trl_nats.publishing import publish_once
from trl_nats.store import JobStore
from trl_nats.subjects import Names

# (subject, payload, Nats-Msg-Id): what the agent's buffered EventPublisher.put takes
EventSink = Callable[[str, bytes, str], None]


def event_kind(event: Event) -> str:
    """The event's tag (``status``, ``metrics``, ``checkpoint``, ``log``): the last token of its subject."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]


def event_subject(names: Names, spec: JobSpec, event: Event) -> str:
    """Where ``event`` of the job ``spec`` goes: ``<job events base>.<kind>``."""
    return names.event(names.job_events(spec), event_kind(event))


def clock_seq() -> int:
    """A sequence number for an event sent outside a running attempt (milliseconds: unique and increasing)."""
    return int(time.time() * 1000)


def put_event(sink: EventSink, names: Names, spec: JobSpec, event: Event, *, msg_id: str) -> None:
    """Queue ``event`` on a buffered publisher (``EventPublisher.put``)."""
    sink(event_subject(names, spec, event), encode(event), msg_id)


async def publish_event(js, names: Names, spec: JobSpec, event: Event, *, msg_id: str, timeout: float) -> None:
    """Publish ``event`` now, retried with the same message id until JetStream acknowledges it."""
    await publish_once(js, event_subject(names, spec, event), encode(event), msg_id, timeout=timeout)


def status_event(record: JobRecord, message: str, *, agent: str | None = None, seq: int = 0) -> StatusEvent:
    """The status event announcing ``record``'s current state."""
    return StatusEvent(
        job_id=record.job_id, attempt=record.attempt, state=record.state, agent=agent, message=message, seq=seq
    )


async def fail_job(
    store: JobStore,
    sink: EventSink,
    names: Names,
    job_id: str,
    error: str,
    *,
    agent: str | None = None,
    allowed_from: frozenset[JobState] | None = None,
) -> JobRecord:
    """Mark the job failed with ``error`` and queue its failed status event (message = ``error``).

    Raises what :meth:`JobStore.fail` raises (the job is unknown, or already ended): then nothing
    is published. The event's id is unique to this run of the job (see :meth:`Names.event_msg_id`).
    """
    record = await store.fail(job_id, error, allowed_from=allowed_from)
    seq = clock_seq()
    event = status_event(record, error, agent=agent, seq=seq)
    put_event(sink, names, record.spec, event, msg_id=names.event_msg_id(job_id, record.runs, seq))
    return record
