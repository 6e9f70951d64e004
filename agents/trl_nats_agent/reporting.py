"""What the agent says about its jobs: events on the job's subject, progress and checkpoints in its record.

Events a job's attempt publishes are numbered per claim (``run``) so their message
ids are unique and a re-publish is deduplicated. Rank 0's events arrive through
the relay (``relay.py``) and come here: metrics become pending progress (written to
the record by the keepalive), a checkpoint is first stored for resume
(``checkpoints.py``), then announced and listed in the record, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from trl_nats import retry
from trl_nats.events import clock_seq, put_event
from trl_nats.messages import CheckpointEvent, Event, JobRecord, JobSpec, JobState, LogEvent, MetricsEvent
from trl_nats.publishing import EventPublisher
from trl_nats.store import IllegalTransition, JobStore, LostClaim
from trl_nats.subjects import Names
from trl_nats_agent.checkpoints import CheckpointStore, CheckpointStoreError
from trl_nats_agent.job import RunningJob
from trl_nats_agent.metrics import AgentMetrics

log = logging.getLogger("trl_nats_agent")


class JobEvents:
    """Publishes a job's events (never blocking: the publisher queues them); subjects from ``trl_nats.events``."""

    def __init__(self, publisher: EventPublisher, names: Names) -> None:
        self.publisher = publisher
        self.names = names

    def emit(
        self, spec: JobSpec, attempt: int, event: Event, job: RunningJob | None = None, *, run: int | None = None
    ) -> None:
        """Number ``event`` (per claim for a running attempt, by the clock otherwise) and queue it."""
        if job is not None:
            job.seq += 1
            seq, run = job.seq, job.run
        else:
            seq = clock_seq()
        event = msgspec.structs.replace(event, seq=seq)
        msg_id = self.names.event_msg_id(spec.job_id, run if run is not None else attempt, seq)
        put_event(self.publisher.put, self.names, spec, event, msg_id=msg_id)

    def emit_log(self, spec: JobSpec, attempt: int, line: str, level: str = "info") -> None:
        self.emit(spec, attempt, LogEvent(job_id=spec.job_id, attempt=attempt, level=level, line=line))


class Progress:
    """Rank 0's events for one attempt: relayed, turned into record progress, checkpoints stored."""

    def __init__(
        self,
        events: JobEvents,
        store: JobStore,
        checkpoints: CheckpointStore,
        metrics: AgentMetrics,
        *,
        agent_id: str,
        on_lost_claim: Callable[[RunningJob], Awaitable[None]],
    ) -> None:
        self.events = events
        self.store = store
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.agent_id = agent_id
        self.on_lost_claim = on_lost_claim

    def on_training_event(self, job: RunningJob, event: Event) -> None:
        if isinstance(event, CheckpointEvent):
            # announced once stored (a resume point must be fetchable first), in order of arrival
            previous = job.checkpoint_tasks[-1] if job.checkpoint_tasks else None
            task = asyncio.get_running_loop().create_task(self._store_checkpoint(job, event, previous))
            job.checkpoint_tasks.append(task)
            return
        self.events.emit(job.spec, job.attempt, event, job)
        self.metrics.event_relayed()
        if isinstance(event, MetricsEvent):
            job.pending_progress = {
                "step": event.step,
                "total_steps": event.total_steps,
                # merged: a closing summary event must not hide the last step's loss
                "last_metrics": {**job.pending_progress.get("last_metrics", {}), **event.metrics},
            }

    async def _store_checkpoint(self, job: RunningJob, event: CheckpointEvent, previous: asyncio.Task | None) -> None:
        """Store a checkpoint for resume, then announce it and record it (the latest complete one, if it is)."""
        ckpt = event.checkpoint
        try:  # checkpoints and the final model alike: anyone can pull them from the store
            if not Path(ckpt.path).resolve().is_relative_to(job.output_dir.resolve()):
                raise CheckpointStoreError(f"checkpoint path {ckpt.path} is outside the job's output dir")
            stored = await self.checkpoints.store(job.spec.job_id, Path(ckpt.path), ckpt.step)
            ckpt = msgspec.structs.replace(ckpt, location=stored.location, sha256=stored.sha256, bytes=stored.size)
        except Exception as exc:  # whatever storing raised: say so on the job, record it unstored, go on
            what = f"checkpoint {Path(ckpt.path).name} (step {ckpt.step})"
            why = str(exc) if isinstance(exc, CheckpointStoreError) else f"{type(exc).__name__}: {exc}"
            log.error("job %s: %s not stored: %s", job.spec.job_id, what, why, exc_info=True)
            self.events.emit(
                job.spec,
                job.attempt,
                LogEvent(job_id=job.spec.job_id, attempt=job.attempt, level="error", line=f"{what} not stored: {why}"),
                job,
            )
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous  # events and the record list checkpoints in the order they were written
        self.events.emit(job.spec, job.attempt, msgspec.structs.replace(event, checkpoint=ckpt), job)

        def change(r: JobRecord) -> dict:
            fields: dict = {"checkpoints": [*r.checkpoints, ckpt]}
            latest = r.latest_checkpoint
            if ckpt.location and not ckpt.final and (latest is None or ckpt.step >= latest.step):
                fields["latest_checkpoint"] = ckpt  # the one before stays stored until `trl-nats prune`
            return fields

        try:
            await self.store.transition(
                job.spec.job_id,
                JobState.in_progress,
                owner=self.agent_id,
                attempt=job.attempt,
                change=change,
                bound_s=retry.RECORD_BOUND_S,
            )
        except LostClaim:
            await self.on_lost_claim(job)
            return
        except IllegalTransition as exc:
            log.info("checkpoint of %s not recorded: %s", job.spec.job_id, exc)
            return
        except Exception as exc:  # NATS unreachable past the write bound: announced, not in the record
            log.error("job %s: checkpoint %d not recorded: %s", job.spec.job_id, ckpt.step, exc)


def progress_fields(record: JobRecord, progress: dict) -> dict:
    """Record fields for the latest metrics: steps never go backwards, and metrics merge so the
    run's closing summary (train_runtime, ...) joins the last step's loss instead of replacing it."""
    if not progress or progress.get("step", 0) < record.step:
        return {}
    fields = dict(progress)
    fields["last_metrics"] = {**record.last_metrics, **progress.get("last_metrics", {})}
    if fields.get("total_steps") is None:
        fields.pop("total_steps", None)
    return fields
