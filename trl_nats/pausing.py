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
from typing import TYPE_CHECKING

from trl_nats.messages import JobRecord, JobState, encode
from trl_nats.publishing import publish_once
from trl_nats.store import IllegalTransition

if TYPE_CHECKING:
    from trl_nats.client import Client

S = JobState


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


# -- the CLI: `trl-nats pause JOB` and `trl-nats resume JOB` (added to trl_nats.cli's parser) ------------


def add_parsers(command) -> None:
    p = command("pause", "pause a job: a running one saves a checkpoint at its next step and frees its GPUs")
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true", help="wait until it is paused")
    r = command("resume", "queue a paused job again; any agent continues it from its checkpoint")
    r.add_argument("job_id")


async def cmd_pause(client: Client, args) -> int:
    import anyio

    record = await client.job(args.job_id).pause()
    if args.wait and record.state is S.pausing:
        with anyio.fail_after(3600):
            while record.state is S.pausing:
                await anyio.sleep(0.5)
                record = await client.job(args.job_id).status()
    if args.json:
        print(encode(record).decode())
    elif record.state is S.pausing:
        print(f"{record.job_id}: pausing; agent {record.owner} saves a checkpoint at the next step, then stops")
    else:
        ckpt = record.latest_checkpoint
        at = f" at step {ckpt.step} ({ckpt.location})" if ckpt and ckpt.location else ""
        print(f"{record.job_id}: {record.state.value}{at}")
    return 0


async def cmd_resume(client: Client, args) -> int:
    record = await client.job(args.job_id).resume()
    if args.json:
        print(encode(record).decode())
    else:
        ckpt = record.latest_checkpoint
        at = f"from step {ckpt.step}" if ckpt and ckpt.location else "from the start"
        print(f"{record.job_id}: queued again in {record.spec.resources.queue}; continues {at}")
    return 0


COMMANDS = {"pause": cmd_pause, "resume": cmd_resume}
