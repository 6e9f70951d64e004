"""The job store: job records in the jobs KV bucket, changed only by compare-and-set.

:meth:`JobStore.transition` is the one place that decides a job's state. It
knows the legal moves, re-reads and retries when another writer got there
first, and refuses writes from an agent that no longer owns the job (JetStream
itself accepts a stale ack, so ownership lives here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from trl_nats import retry
from trl_nats.messages import Allocation, JobRecord, JobState, check_job_id, decode, encode, now
from trl_nats.topology import bucket_keys

log = logging.getLogger(__name__)

S = JobState
LEGAL: dict[JobState, frozenset[JobState]] = {
    # -> paused: paused while queued (its message is dropped when an agent meets it)
    S.scheduled: frozenset({S.in_progress, S.cancelled, S.failed, S.paused}),
    # in_progress -> in_progress: progress updates by the owner; -> scheduled: retry
    S.in_progress: frozenset({S.in_progress, S.completed, S.failed, S.cancelled, S.scheduled, S.pausing}),
    # the owner saves, stores and stops (-> paused), or the run ended first (completed, failed, retry, cancel)
    S.pausing: frozenset({S.pausing, S.paused, S.completed, S.failed, S.cancelled, S.scheduled}),
    # resume re-queues it; cancel ends it
    S.paused: frozenset({S.scheduled, S.cancelled}),
    S.completed: frozenset(),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
}

# a job can be claimed while it waits, or taken over while its owner is gone (a pausing one stays pausing:
# its new owner pauses it at its first step)
CLAIMABLE: frozenset[JobState] = frozenset({S.scheduled, S.in_progress, S.pausing})

_UNSET = object()


class JobNotFound(KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job with id {self.job_id!r}: check the id with `trl-nats jobs`"


class IllegalTransition(RuntimeError):
    """The job is in a state from which the requested move is not allowed."""

    def __init__(self, record: JobRecord, to: JobState) -> None:
        super().__init__(f"job {record.job_id} is {record.state.value}; it cannot become {to.value}")
        self.record = record
        self.to = to


class LostClaim(RuntimeError):
    """The writer no longer owns the job (another agent claimed it, or its attempt moved on)."""

    def __init__(self, record: JobRecord, owner: str | None, attempt: int | None) -> None:
        super().__init__(
            f"job {record.job_id}: claim lost (record owner {record.owner!r} attempt {record.attempt}, "
            f"writer {owner!r} attempt {attempt})"
        )
        self.record = record


class JobStore:
    def __init__(self, kv: KeyValue, *, write_bound_s: float = retry.WRITE_BOUND_S) -> None:
        self.kv = kv
        self.write_bound_s = write_bound_s  # how long a write rides out an election (trl_nats/retry.py)

    async def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Store a new record; if the id exists already, return the existing one and False."""
        check_job_id(record.job_id)
        try:
            await retry.kv_create(
                self.kv, record.job_id, encode(record), what=f"job record {record.job_id}", bound_s=self.write_bound_s
            )
            return record, True
        except KeyWrongLastSequenceError:
            return await self.get(record.job_id), False

    async def get_with_revision(self, job_id: str) -> tuple[JobRecord, int]:
        check_job_id(job_id)
        try:
            entry = await self.kv.get(job_id)
        except KeyNotFoundError:
            raise JobNotFound(job_id) from None
        if entry.value is None:
            raise JobNotFound(job_id)
        return decode(entry.value, JobRecord), entry.revision

    async def get(self, job_id: str) -> JobRecord:
        return (await self.get_with_revision(job_id))[0]

    async def list(self) -> list[JobRecord]:
        keys = await bucket_keys(self.kv)
        out: list[JobRecord] = []
        for key in keys:
            try:
                out.append(await self.get(key))
            except JobNotFound:
                continue
        out.sort(key=lambda r: r.submitted_at)
        return out

    async def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        owner: object = _UNSET,
        attempt: int | None = None,
        allowed_from: frozenset[JobState] | None = None,
        change: Callable[[JobRecord], dict] | None = None,
        retries: int = 50,
        bound_s: float | None = None,
    ) -> JobRecord:
        """Move ``job_id`` to ``to`` with compare-and-set.

        ``owner``/``attempt``, when given, must match the stored record (the
        writer still holds the claim), else :class:`LostClaim`. ``change``
        returns extra field values computed from the current record.
        Timestamps are set here, so every writer sets them the same way.
        ``bound_s``: how long the read and the write ride out an election (default: the store's).
        """
        bound = self.write_bound_s if bound_s is None else bound_s
        for _ in range(retries):
            record, revision = await retry.retry_write(
                lambda: self.get_with_revision(job_id),
                f"job {job_id} -> {to.value} (reading it first)",
                bound_s=bound,
            )
            if owner is not _UNSET and (record.owner != owner or (attempt is not None and record.attempt != attempt)):
                raise LostClaim(record, owner if isinstance(owner, str) else None, attempt)
            if to is S.in_progress and record.state is S.pausing:
                to = S.pausing  # the owner's progress writes never undo a pause the user asked for
            if to not in LEGAL[record.state] or (allowed_from is not None and record.state not in allowed_from):
                raise IllegalTransition(record, to)
            fields = dict(change(record)) if change else {}
            t = now()
            fields.setdefault("updated_at", t)
            if to is S.in_progress and record.state is not S.in_progress:
                fields.setdefault("started_at", t)
            if to.terminal:
                fields.setdefault("finished_at", t)
            new = msgspec.structs.replace(record, state=to, **fields)
            try:
                await retry.kv_update(
                    self.kv,
                    job_id,
                    encode(new),
                    revision,
                    what=f"job {job_id} -> {to.value}",
                    bound_s=bound,
                )
                return new
            except KeyWrongLastSequenceError:
                continue  # someone else wrote between our read and write: re-read and re-decide
        raise RuntimeError(f"job {job_id}: gave up after {retries} conflicting writes")

    async def claim(self, record: JobRecord, agent: str, allocation: list[Allocation]) -> JobRecord:
        """Claim the job ``record`` describes for ``agent``: its next attempt, on ``allocation``.

        Compare-and-set against the record as the caller read it: if anyone claimed the job or moved
        its attempt on since, :class:`LostClaim`; if it ended meanwhile, :class:`IllegalTransition`.
        """
        attempt = record.attempt + 1
        return await self.transition(
            record.job_id,
            S.in_progress,
            owner=record.owner,
            attempt=record.attempt,
            allowed_from=CLAIMABLE,
            change=lambda r: {
                "owner": agent,
                "attempt": attempt,
                "runs": r.runs + 1,
                "allocation": list(allocation),
                "started_at": now(),
            },
        )

    async def fail(self, job_id: str, error: str, *, allowed_from: frozenset[JobState] | None = None) -> JobRecord:
        """Mark a job failed with ``error`` (no owner any more). Publishing its status event is
        :func:`trl_nats.events.fail_job`'s part: callers that tell watchers use that."""
        return await self.transition(
            job_id, S.failed, allowed_from=allowed_from, change=lambda r: {"owner": None, "error": error}
        )
