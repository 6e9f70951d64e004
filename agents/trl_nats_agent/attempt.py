"""One attempt of a claimed job on this node: prepare -> launch -> keepalive -> finish.

``prepare`` writes the spec, links the datasets, picks the resume point and runs the
pre-flight checks (``preflight.py``); ``launch`` starts torchrun (``launcher.py``) with
the rank environment (``workspace.py``) and relays rank 0's events (``relay.py``);
``keepalive`` keeps the JetStream message and the claim alive, writes progress and
notices a cancel or a lost claim; ``finish`` asks the pure :func:`outcome.outcome`
what the end means, writes that state (CAS, owner-guarded), then settles the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from trl_nats import retry
from trl_nats.messages import JobKind, JobRecord, JobState, LogEvent, StatusEvent, now
from trl_nats.ports import free_port
from trl_nats.settings import NatsSettings
from trl_nats.store import IllegalTransition, JobNotFound, JobStore, LostClaim
from trl_nats_agent import pausing
from trl_nats_agent.checkpoints import CheckpointStore, CheckpointStoreError
from trl_nats_agent.job import RunningJob
from trl_nats_agent.launcher import TrainingProcess, torchrun_command
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.node import Node
from trl_nats_agent.outcome import Outcome, Settle, outcome
from trl_nats_agent.preflight import model_problem, rows_problem
from trl_nats_agent.recipes.contract import COMPLETE_MARKER, EXIT_BAD_JOB, bad_job_sentence, checkpoint_dir_name
from trl_nats_agent.relay import EventSocket
from trl_nats_agent.reporting import JobEvents, Progress, progress_fields
from trl_nats_agent.settings import INLINE_NOOP
from trl_nats_agent.testing.inline import run_inline_noop
from trl_nats_agent.workspace import Workspace

log = logging.getLogger("trl_nats_agent")

RECIPES = {JobKind.dpo: "trl_nats_agent.recipes.dpo", JobKind.sft: "trl_nats_agent.recipes.sft"}


class BadJob(Exception):
    """Found before launch: the job cannot run as specified; the message is the one sentence to show."""


class GangSide(Protocol):
    """What an attempt of a multi-node job needs from the gang side (``gang/gangs.py``)."""

    def describe(self, job: RunningJob) -> str: ...
    async def monitor(self, job: RunningJob, stop: Callable[[], Awaitable[None]]) -> None: ...
    async def settle(self, job: RunningJob, rc: int | None, error: str | None) -> tuple[int | None, str | None]: ...


class Attempts:
    def __init__(
        self,
        node: Node,
        nats: NatsSettings,
        store: JobStore,
        workspace: Workspace,
        events: JobEvents,
        checkpoints: CheckpointStore,
        metrics: AgentMetrics,
        *,
        datasets,
        running: dict[str, RunningJob],
    ) -> None:
        self.node = node
        self.cfg = node.cfg
        self.id = node.id
        self.nats = nats
        self.keepalive_s = self.cfg.keepalive_for(nats.ack_wait_s)
        self.store = store
        self.workspace = workspace
        self.events = events
        self.checkpoints = checkpoints
        self.metrics = metrics
        self.datasets = datasets  # the datasets object store
        self.running = running
        self.gangs: GangSide | None = None  # handed in once the gang side exists
        self.progress = Progress(events, store, checkpoints, metrics, agent_id=self.id, on_lost_claim=self.lost_claim)

    # -- the whole attempt, for the agent that owns the record ----------------------------
    async def run(self, job: RunningJob) -> None:
        spec = job.spec
        message = (
            self.gangs.describe(job)
            if job.gang and self.gangs
            else f"claimed by {self.id} on {self.cfg.node} ({self.cfg.device} {job.gpus})"
        )
        status = StatusEvent(
            job_id=spec.job_id, attempt=job.attempt, state=JobState.in_progress, agent=self.id, message=message
        )
        self.events.emit(spec, job.attempt, status, job)
        try:
            rc, error = await self.train(job)
        except Exception as exc:
            log.exception("job %s: agent-side failure", spec.job_id)
            rc, error = None, f"agent error: {exc}"
        # the training keepalive has stopped: the message stays ours through the gang settling, the final
        # writes and the flush (an election can outlast the ack wait) until finish settles it
        pinger = asyncio.create_task(keep_message_alive(job, self.keepalive_s))
        try:
            if job.gang is not None and self.gangs is not None:
                rc, error = await self.gangs.settle(job, rc, error)
            await self.finish(job, rc, error)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
            self.running.pop(spec.job_id, None)
            self.node.release(job.gpus)
            await self.node.beat()

    # -- prepare -> launch -> wait: every node of the job ------------------------------
    async def train(self, job: RunningJob) -> tuple[int | None, str | None]:
        """Run the job's training to its end; returns (exit code, error)."""
        try:
            args = await self.prepare(job)
        except BadJob as exc:
            log.warning("job %s: %s", job.spec.job_id, exc)
            return EXIT_BAD_JOB, str(exc)
        except Exception as exc:
            return None, f"could not prepare the job: {exc}"
        if self.cfg.recipe_override == INLINE_NOOP:
            return await run_inline_noop(job, self.keepalive)
        if job.cancel_reason is not None or job.handed_back:
            return None, None
        launch = job.gang
        sock = EventSocket(
            self.workspace.socket_path(job),
            job_id=job.spec.job_id,
            attempt=job.attempt,
            node=self.cfg.node,
            on_event=lambda e: self.progress.on_training_event(job, e),
        )
        if job.owns_record:
            await sock.start()
        cmd = torchrun_command(
            self.cfg.recipe_override or RECIPES[job.spec.kind],
            len(job.gpus),
            args,
            rdzv_endpoint=launch.rdzv_endpoint if launch else f"127.0.0.1:{free_port()}",
            run_id=f"{job.spec.job_id}-{job.attempt}",
            nnodes=launch.nnodes if launch else 1,
            node_rank=launch.node_rank if launch else 0,
            local_addr=launch.local_addr if launch else None,
        )
        job.proc = TrainingProcess(
            cmd, env=self.workspace.rank_env(job), cwd=job.workdir, log_path=job.workdir / "train.log"
        )
        watchers = [asyncio.create_task(self.keepalive(job))] if job.owns_record else []
        if launch is not None and self.gangs is not None:
            watchers.append(asyncio.create_task(self.gangs.monitor(job, lambda: self._stop_proc(job))))
        try:
            await job.proc.start()
            rc = await job.proc.wait()
        finally:
            for w in watchers:
                w.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w
            await sock.close()
        if rc != 0 and job.gang_stop_reason:
            return rc, f"stopped because {job.gang_stop_reason}"
        if rc != 0 and (sentence := bad_job_sentence(list(job.proc.tail))) is not None:
            return EXIT_BAD_JOB, sentence  # torchrun exits 1 for any failed rank: the recipe's line says why
        return rc, (f"training exited with code {rc}:\n{job.proc.error_tail()}" if rc != 0 else None)

    async def prepare(self, job: RunningJob) -> list[str]:
        spec = job.spec
        spec_path = self.workspace.write_spec(job)
        problem = model_problem(spec.model, offline=self.cfg.offline, cwd=job.workdir, node=self.cfg.node)
        if problem is not None:
            raise BadJob(problem)
        if job.gang:  # every node from the one stored checkpoint all can fetch, or all from the start
            resume = await pausing.gang_resume_point(
                self.store, self.checkpoints, job, agent_id=self.id, say=lambda line: self._log(job, line)
            )
        else:
            resume = await self._resume_point(job)
        args = ["--spec", str(spec_path), "--output", str(job.output_dir), "--resume", resume]
        datasets = [("--dataset", spec.dataset, "dataset.jsonl", "training dataset")]
        if spec.eval_dataset is not None:
            datasets.append(("--eval-dataset", spec.eval_dataset, "eval.jsonl", "evaluation dataset"))
        for flag, ref, name, what in datasets:
            path = await self.workspace.dataset(self.datasets, ref, job.workdir / name)
            if (problem := await asyncio.to_thread(rows_problem, path, spec.kind, what)) is not None:
                raise BadJob(problem)
            args += [flag, str(path)]
        return args

    async def _resume_point(self, job: RunningJob) -> str:
        """``--resume`` for the recipe: the record's latest stored checkpoint, fetched here if it is newer than
        any complete checkpoint in this agent's output dir; else "auto" (the newest local one, if any)."""
        record = await self.store.get(job.spec.job_id)
        latest = record.latest_checkpoint
        if latest is None or not latest.location:
            return "auto"
        local = job.output_dir / checkpoint_dir_name(latest.step)
        if (local / COMPLETE_MARKER).is_file():
            return str(local)
        roots = [self.workspace.policy.output_root, *([self.checkpoints.root] if self.checkpoints.root else [])]
        try:
            path = await self.checkpoints.fetch(latest.location, latest.sha256, job.output_dir, roots)
        except (CheckpointStoreError, OSError) as exc:
            line = f"cannot resume from checkpoint {latest.step} ({exc}); starting from the newest local one, if any"
            log.warning("job %s: %s", job.spec.job_id, line)
            self._log(job, line, "warning")
            return "auto"
        self._log(job, f"resuming from checkpoint {latest.step} written by {latest.node} ({latest.location})")
        return str(path)

    def _log(self, job: RunningJob, line: str, level: str = "info") -> None:
        event = LogEvent(job_id=job.spec.job_id, attempt=job.attempt, level=level, line=line)
        # the claim's event numbers are the record owner's (the gang leader's): another node's would collide
        self.events.emit(job.spec, job.attempt, event, job if job.owns_record else None)

    # -- while it runs -----------------------------------------------------------------
    async def keepalive(self, job: RunningJob) -> None:
        """Keep the claim alive, write progress, and notice a cancel or a lost claim."""
        jid = job.spec.job_id
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(min(self.cfg.progress_write_s, self.keepalive_s))
            if time.monotonic() - last_ping >= self.keepalive_s:
                with contextlib.suppress(Exception):
                    await job.msg.in_progress()
                    last_ping = time.monotonic()
            progress, job.pending_progress = job.pending_progress, {}
            try:
                record = await self.store.transition(
                    jid,
                    JobState.in_progress,
                    owner=self.id,
                    attempt=job.attempt,
                    change=lambda r, p=progress: progress_fields(r, p),
                )
            except LostClaim:
                await self.lost_claim(job)
                return
            except IllegalTransition:
                return
            except Exception as exc:  # broker restarting: try again next round
                log.info("progress of %s not written: %s", jid, exc)
                if progress:
                    job.pending_progress = {**progress, **job.pending_progress}
                continue
            if record.cancel_requested and job.cancel_reason is None:
                await self.cancel(job, record.error or "cancelled by user")
            elif record.state is JobState.pausing:
                pausing.request_pause(job.output_dir)

    async def _stop_proc(self, job: RunningJob) -> None:
        if job.proc:
            await job.proc.stop(self.cfg.cancel_grace_s)

    async def lost_claim(self, job: RunningJob) -> None:
        if job.lost_claim:
            return
        job.lost_claim = True
        log.error("job %s: this agent lost its claim; stopping its training", job.spec.job_id)
        await self._stop_proc(job)

    async def cancel(self, job: RunningJob, reason: str) -> None:
        if job.cancel_reason is not None:
            return
        job.cancel_reason = reason
        log.info("cancelling %s: %s", job.spec.job_id, reason)
        await self._stop_proc(job)

    async def hand_back(self, job: RunningJob) -> None:
        """The agent is stopping: end the attempt without counting it."""
        job.handed_back = True
        await self._stop_proc(job)

    # -- finish -------------------------------------------------------------------------
    async def finish(self, job: RunningJob, rc: int | None, error: str | None) -> None:
        """Write the final state (CAS, owner-guarded), then settle the message."""
        spec, jid, attempt = job.spec, job.spec.job_id, job.attempt
        if job.checkpoint_tasks:  # the record's checkpoint list is complete before the job ends
            _, pending = await asyncio.wait(job.checkpoint_tasks, timeout=600)
            for task in pending:
                task.cancel()
        end = outcome(
            exit_code=rc,
            error=error,
            attempt=attempt,
            max_attempts=spec.max_attempts,
            agent_id=self.id,
            cancel_reason=job.cancel_reason,
            handed_back=job.handed_back,
            lost_claim=job.lost_claim,
            paused=pausing.stopped_at_pause(rc, job.output_dir),
            retry_backoff_s=self.cfg.retry_backoff_s,
            fetch_timeout_s=self.cfg.fetch_timeout_s,
        )
        if end.state is None:
            return  # the new owner decides; never ack a message that is not ours
        progress = job.pending_progress
        try:
            await self.store.transition(
                jid,
                end.state,
                owner=self.id,
                attempt=attempt,
                change=lambda r: _final_fields(r, end, progress),
                bound_s=retry.RECORD_BOUND_S,
            )
        except (LostClaim, IllegalTransition, JobNotFound) as exc:
            log.warning("job %s: final state not written: %s", jid, exc)
            return
        except Exception as exc:  # NATS gone for ten minutes: the message is redelivered and another agent decides
            log.error("job %s: final state not written: %s", jid, exc)
            return
        self.metrics.finished_attempt(end.state.value, failed=end.failed, retried=end.retried)
        status = StatusEvent(job_id=jid, attempt=attempt, state=end.state, agent=self.id, message=end.message)
        self.events.emit(spec, attempt, status, job)
        try:
            await self.events.publisher.flush(timeout=30)
        except TimeoutError:
            log.warning("job %s: events still queued after 30s", jid)
        await self._settle(job, end)
        log.info("job %s attempt %d -> %s", jid, attempt, end.state.value)

    async def _settle(self, job: RunningJob, end: Outcome) -> None:
        for i in range(5):  # an ack lost in a broker restart only costs a redelivery, which acks a finished job
            try:
                if end.settle is Settle.ack:
                    await job.msg.ack_sync(timeout=self.nats.request_timeout)
                elif end.settle is Settle.nak:
                    await job.msg.nak(delay=end.delay_s)
                else:
                    await job.msg.term()
                return
            except Exception as exc:
                log.info("job %s: %s not confirmed (%s); retrying", job.spec.job_id, end.settle.value, exc)
                await asyncio.sleep(0.5 * (i + 1))


async def keep_message_alive(job: RunningJob, every_s: float) -> None:
    """Tell JetStream the job's message is still being worked on, now and every ``every_s``, until it is
    settled (acked, nak'd or terminated), or the claim is lost (then the message is not ours to keep)."""
    while job.msg is not None and not job.msg.is_acked and not job.lost_claim:
        with contextlib.suppress(Exception):  # a broker restart: the next ping, or the ack wait, covers it
            await job.msg.in_progress()
        await asyncio.sleep(every_s)


def _final_fields(r: JobRecord, end: Outcome, progress: dict) -> dict:
    """The record's fields for the attempt's final state (progress not yet written included)."""
    fields: dict = progress_fields(r, progress)
    if end.state is JobState.scheduled:
        fields.update(owner=None, allocation=[], error=end.error)
        if end.handed_back:
            fields["attempt"] = max(0, r.attempt - 1)  # a hand-back is not a failed attempt
    elif end.state is JobState.completed:
        fields.update(error=None, finished_at=now())
    elif end.state is JobState.paused:
        fields.update(pausing.paused_fields(r))
    else:
        fields["error"] = end.error
    return fields
