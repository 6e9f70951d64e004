"""The node agent: heartbeat, the claim loop, running jobs, cancel and shutdown.

One agent per machine. It binds the pools its GPUs can serve, fetches one
job at a time from a pool only while it has the free GPUs for it, claims the
job by compare-and-set on its record (owner, attempt), keeps the JetStream
message alive with ``in_progress()`` while training runs, and acks only once
the final state is written. Malformed submissions are terminated with the
reason logged; nothing here lets one bad job take the agent down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import FetchTimeoutError, NotFoundError

from trl_nats.messages import (
    AgentRecord,
    Allocation,
    BadMessage,
    CancelRequest,
    CheckpointEvent,
    Event,
    GpuInfo,
    JobKind,
    JobRecord,
    JobSpec,
    JobState,
    MetricsEvent,
    StatusEvent,
    decode,
    encode,
    now,
    valid_job_id,
    validate_spec,
)
from trl_nats.publishing import EventPublisher
from trl_nats.settings import NatsSettings, connect
from trl_nats.store import IllegalTransition, JobNotFound, JobStore, LostClaim
from trl_nats.topology import ACK_WAIT_S, Topology, ensure_pool_consumer, ensure_topology
from trl_nats_agent import __version__
from trl_nats_agent.capacity import pools_for, threads_per_slot
from trl_nats_agent.launcher import TrainingProcess, free_port, torchrun_command
from trl_nats_agent.relay import EventSocket

log = logging.getLogger("trl_nats_agent")

RECIPES = {JobKind.dpo: "trl_nats_agent.recipes.dpo", JobKind.sft: "trl_nats_agent.recipes.sft"}
# recipe_override value that completes jobs without starting any process: for
# benchmarks and scale tests of claiming, where a process start would be all they measure
INLINE_NOOP = "inline:noop"


@dataclass
class AgentConfig:
    state_dir: Path
    device: str  # "cuda" | "cpu"
    gpus: list[GpuInfo]
    agent_id: str = ""
    node: str = field(default_factory=platform.node)
    heartbeat_s: float = 3.0
    keepalive_s: float = ACK_WAIT_S / 3
    fetch_timeout_s: float = 2.0
    cancel_grace_s: float = 10.0
    drain_timeout_s: float = 0.0  # on shutdown: wait this long for running jobs, then hand them back
    retry_backoff_s: float = 2.0
    progress_write_s: float = 2.0  # at most one KV progress write per job this often
    recipe_override: str | None = None  # a module to run instead of the kind's recipe (tests, benchmarks)

    def __post_init__(self) -> None:
        if not self.agent_id:
            self.agent_id = f"{self.node}-{uuid.uuid4().hex[:6]}"
        self.agent_id = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.agent_id)


@dataclass
class RunningJob:
    spec: JobSpec
    attempt: int
    msg: Msg
    gpus: list[int]
    workdir: Path
    output_dir: Path
    proc: TrainingProcess | None = None
    seq: int = 0
    cancel_reason: str | None = None
    lost_claim: bool = False
    handed_back: bool = False
    last_progress_write: float = 0.0
    pending_progress: dict = field(default_factory=dict)
    task: asyncio.Task | None = None


class Agent:
    def __init__(self, settings: NatsSettings, config: AgentConfig) -> None:
        self.settings = settings
        self.names = settings.names
        self.cfg = config
        self.id = config.agent_id
        self.free: list[int] = [g.index for g in config.gpus]
        self.running: dict[str, RunningJob] = {}
        self.shapes = pools_for(config.gpus)
        self.pools = [r.pool for r in self.shapes]
        self.started_at = now()
        self._stopping = asyncio.Event()
        self._capacity_changed = asyncio.Event()
        self.claims = 0
        self.nc = None
        self.topo: Topology | None = None
        self.store: JobStore | None = None
        self.events: EventPublisher | None = None
        # Unix socket paths are limited to 108 bytes, so they live in a short temp dir, not the workdir
        self.sock_dir = Path(tempfile.mkdtemp(prefix="trln-"))

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> None:
        while True:  # a node agent outlives broker outages, its first connect included
            try:
                self.nc = await connect(self.settings, name=f"trl-nats-agent {self.id}")
                break
            except ConnectionError as exc:
                log.warning("%s; retrying in 2s", exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), 2.0)
                    return
                except TimeoutError:
                    continue
        js = self.nc.jetstream(timeout=self.settings.request_timeout)
        self.topo = await ensure_topology(js, self.settings)
        self.store = JobStore(self.topo.jobs)
        self.events = EventPublisher(js).start()
        control = await self.nc.subscribe(self.names.control(self.id), cb=self._on_control)
        log.info(
            "agent %s on %s: %d %s slot(s), pools %s",
            self.id,
            self.cfg.node,
            len(self.cfg.gpus),
            self.cfg.device,
            self.pools,
        )
        await self._heartbeat_once()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeat_loop())
                fetchers = [tg.create_task(self._fetch_loop(r.pool, r.gpus_per_node)) for r in self.shapes]
                await self._stopping.wait()
                for f in fetchers:
                    f.cancel()
                await self._drain()
        finally:
            with contextlib.suppress(Exception):
                await control.unsubscribe()
            await self.events.close()
            with contextlib.suppress(Exception):
                await self.topo.agents.delete(self.id)
            await self.nc.close()
            shutil.rmtree(self.sock_dir, ignore_errors=True)

    def stop(self) -> None:
        """Stop claiming; running jobs finish within the drain timeout or are handed back."""
        self._stopping.set()
        self._capacity_changed.set()

    async def _drain(self) -> None:
        if not self.running:
            return
        log.info("stopping: %d running job(s), waiting up to %.0fs", len(self.running), self.cfg.drain_timeout_s)
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks and self.cfg.drain_timeout_s > 0:
            await asyncio.wait(tasks, timeout=self.cfg.drain_timeout_s)
        for job in list(self.running.values()):
            job.handed_back = True
            if job.proc:
                await job.proc.stop(self.cfg.cancel_grace_s)
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks:
            await asyncio.wait(tasks, timeout=60)

    # -- heartbeat -------------------------------------------------------------
    def record(self) -> AgentRecord:
        return AgentRecord(
            agent_id=self.id,
            node=self.cfg.node,
            version=__version__,
            device="cuda" if self.cfg.device == "cuda" else "cpu",
            gpus=self.cfg.gpus,
            free_gpus=sorted(self.free),
            running_jobs=sorted(self.running),
            pools=self.pools,
            started_at=self.started_at,
        )

    async def _heartbeat_once(self) -> None:
        try:
            await self.topo.agents.put(self.id, encode(self.record()))
        except Exception as exc:  # broker restarting: the next beat will do
            log.info("heartbeat not written: %s", exc)

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            await self._heartbeat_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.heartbeat_s)

    # -- claiming --------------------------------------------------------------
    async def _fetch_loop(self, pool: str, need: int) -> None:
        """Fetch from ``pool`` only while this node has ``need`` free GPUs."""
        durable = await ensure_pool_consumer(self.topo.js, self.settings, pool)
        sub = await self.topo.js.pull_subscribe_bind(durable, self.names.jobs_stream)
        while not self._stopping.is_set():
            if len(self.free) < need:
                self._capacity_changed.clear()
                await self._capacity_changed.wait()
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
                    await ensure_pool_consumer(self.topo.js, self.settings, pool)
                continue
            for msg in msgs:
                await self._on_submission(msg, need)

    async def _on_submission(self, msg: Msg, need: int) -> None:
        try:
            spec = validate_spec(decode(msg.data, JobSpec))
        except BadMessage as exc:
            await self._reject(msg, str(exc))
            return
        if len(self.free) < need or self._stopping.is_set():
            # another pool's fetch took the room meanwhile: let another agent have it
            await msg.nak()
            return
        gpus, self.free = self.free[:need], self.free[need:]
        self._capacity_changed.set()
        try:
            claimed = await self._claim(msg, spec, gpus)
        except Exception:
            log.exception("claim of %s failed", spec.job_id)
            claimed = None
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.cfg.retry_backoff_s)
        if claimed is None:
            self._release(gpus)
            return
        claimed.task = asyncio.create_task(self._run_job(claimed), name=f"job-{spec.job_id}")

    async def _reject(self, msg: Msg, reason: str) -> None:
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
            await self.store.transition(
                job_id,
                JobState.failed,
                allowed_from=frozenset({JobState.scheduled}),
                change=lambda r: {"error": f"rejected: {reason}"},
            )
            self._emit_raw(
                job_id,
                self.names.events(job_id),
                0,
                StatusEvent(
                    job_id=job_id, attempt=0, state=JobState.failed, agent=self.id, message=f"rejected: {reason}"
                ),
                msg_id=f"{job_id}.rejected",
            )

    async def _claim(self, msg: Msg, spec: JobSpec, gpus: list[int]) -> RunningJob | None:
        try:
            record = await self.store.get(spec.job_id)
        except JobNotFound:
            # published straight on NATS (e.g. `nats pub`), not through the client: adopt it
            record, _ = await self.store.create(JobRecord(job_id=spec.job_id, spec=spec))
        if record.state.terminal:
            await msg.ack()  # cancelled while waiting, or a duplicate of a finished job
            return None
        if record.state is JobState.in_progress and record.owner != self.id:
            if await self._owner_alive(record):
                # redelivered while its owner still runs it (e.g. broker restart): not ours
                await msg.nak(delay=ACK_WAIT_S)
                return None
            log.warning("job %s: owner %s is gone; taking over", spec.job_id, record.owner)
        if record.attempt >= spec.max_attempts:
            await self._finish_exhausted(record)
            await msg.term()
            return None
        attempt = record.attempt + 1
        alloc = Allocation(
            agent=self.id,
            node=self.cfg.node,
            gpus=gpus,
            gpu_type=None if self.cfg.device == "cpu" else self.cfg.gpus[0].name,
        )
        try:
            record = await self.store.transition(
                spec.job_id,
                JobState.in_progress,
                owner=record.owner,  # nobody else may have claimed it since we looked
                attempt=record.attempt,
                allowed_from=frozenset({JobState.scheduled, JobState.in_progress}),
                change=lambda r: {"owner": self.id, "attempt": attempt, "allocation": [alloc], "started_at": now()},
            )
        except (LostClaim, IllegalTransition) as exc:
            log.info("job %s not claimed: %s", spec.job_id, exc)
            await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        self.claims += 1
        output_dir = Path(spec.output_dir) if spec.output_dir else self.cfg.state_dir / "outputs" / spec.job_id
        job = RunningJob(
            spec=record.spec,
            attempt=attempt,
            msg=msg,
            gpus=gpus,
            workdir=self.cfg.state_dir / "jobs" / spec.job_id / f"attempt-{attempt}",
            output_dir=output_dir,
        )
        self.running[spec.job_id] = job
        log.info("claimed %s attempt %d on %s %s", spec.job_id, attempt, self.cfg.device, gpus)
        return job

    async def _owner_alive(self, record: JobRecord) -> bool:
        if not record.owner:
            return False
        try:
            entry = await self.topo.agents.get(record.owner)
        except (NotFoundError, Exception):
            return False
        if not entry.value:
            return False
        try:
            other = decode(entry.value, AgentRecord)
        except BadMessage:
            return False
        return record.job_id in other.running_jobs and now() - other.heartbeat_at < self.settings.agent_ttl_s

    async def _finish_exhausted(self, record: JobRecord) -> None:
        reason = f"gave up after {record.attempt} attempt(s)" + (
            f"; last error: {record.error}" if record.error else ""
        )
        with contextlib.suppress(IllegalTransition, LostClaim):
            record = await self.store.transition(
                record.job_id, JobState.failed, change=lambda r: {"owner": None, "error": reason}
            )
            self._emit(
                record.spec,
                record.attempt,
                StatusEvent(
                    job_id=record.job_id, attempt=record.attempt, state=JobState.failed, agent=self.id, message=reason
                ),
            )

    def _release(self, gpus: list[int]) -> None:
        self.free = sorted(self.free + gpus)
        self._capacity_changed.set()

    # -- events ----------------------------------------------------------------
    def _emit(self, spec: JobSpec, attempt: int, event: Event, job: RunningJob | None = None) -> None:
        base = spec.events_subject or self.names.events(spec.job_id)
        if job is not None:
            job.seq += 1
            seq = job.seq
        else:
            seq = int(time.time() * 1000)
        event = msgspec.structs.replace(event, seq=seq)
        self._emit_raw(spec.job_id, base, attempt, event, msg_id=self.names.event_msg_id(spec.job_id, attempt, seq))

    def _emit_raw(self, job_id: str, base: str, attempt: int, event: Event, *, msg_id: str) -> None:
        kind = type(event).__struct_config__.tag
        self.events.put(self.names.event(base, kind), encode(event), msg_id)

    def _on_training_event(self, job: RunningJob, event: Event) -> None:
        self._emit(job.spec, job.attempt, event, job)
        if isinstance(event, MetricsEvent):
            job.pending_progress = {
                "step": event.step,
                "total_steps": event.total_steps,
                # merged: a closing summary event must not hide the last step's loss
                "last_metrics": {**job.pending_progress.get("last_metrics", {}), **event.metrics},
            }
        elif isinstance(event, CheckpointEvent):
            ckpt = event.checkpoint
            asyncio.get_running_loop().create_task(self._record_checkpoint(job, ckpt))

    async def _record_checkpoint(self, job: RunningJob, ckpt) -> None:
        try:
            await self.store.transition(
                job.spec.job_id,
                JobState.in_progress,
                owner=self.id,
                attempt=job.attempt,
                change=lambda r: {"checkpoints": [*r.checkpoints, ckpt]},
            )
        except LostClaim:
            await self._lost_claim(job)
        except IllegalTransition as exc:
            log.info("checkpoint of %s not recorded: %s", job.spec.job_id, exc)

    async def _lost_claim(self, job: RunningJob) -> None:
        if job.lost_claim:
            return
        job.lost_claim = True
        log.error("job %s: this agent lost its claim; stopping its training", job.spec.job_id)
        if job.proc:
            await job.proc.stop(self.cfg.cancel_grace_s)

    # -- control ---------------------------------------------------------------
    async def _on_control(self, msg: Msg) -> None:
        try:
            req = decode(msg.data, CancelRequest)
        except BadMessage as exc:
            log.warning("ignoring control message: %s", exc)
            return
        job = self.running.get(req.job_id)
        if job is not None:
            await self._cancel(job, req.reason)

    async def _cancel(self, job: RunningJob, reason: str) -> None:
        if job.cancel_reason is not None:
            return
        job.cancel_reason = reason
        log.info("cancelling %s: %s", job.spec.job_id, reason)
        if job.proc:
            await job.proc.stop(self.cfg.cancel_grace_s)

    # -- running a job ---------------------------------------------------------
    async def _prepare(self, job: RunningJob) -> list[str]:
        spec = job.spec
        job.workdir.mkdir(parents=True, exist_ok=True)
        job.output_dir.mkdir(parents=True, exist_ok=True)
        (job.workdir / "spec.json").write_bytes(encode(spec))
        args = ["--spec", str(job.workdir / "spec.json"), "--output", str(job.output_dir), "--resume", "auto"]
        args += ["--dataset", str(await self._fetch_dataset(spec.dataset, job.workdir / "dataset.jsonl"))]
        if spec.eval_dataset is not None:
            args += ["--eval-dataset", str(await self._fetch_dataset(spec.eval_dataset, job.workdir / "eval.jsonl"))]
        return args

    async def _fetch_dataset(self, ref, dest: Path) -> Path:
        cache = self.cfg.state_dir / "datasets" / f"{ref.sha256}.jsonl"
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{uuid.uuid4().hex}.part")
            with open(tmp, "wb") as f:
                await self.topo.datasets.get(ref.object, writeinto=f)
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
            if digest != ref.sha256:
                tmp.unlink(missing_ok=True)
                raise BadMessage(f"dataset {ref.object} has sha256 {digest}, expected {ref.sha256}")
            os.replace(tmp, cache)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        os.link(cache, dest) if _same_fs(cache, dest) else shutil.copyfile(cache, dest)
        return dest

    def _env(self, job: RunningJob) -> dict[str, str]:
        env = dict(os.environ)
        env["TRL_NATS_DEVICE"] = self.cfg.device
        env["TRL_NATS_EVENTS_SOCKET"] = str(self._socket_path(job))
        env["TRL_NATS_JOB_ID"] = job.spec.job_id
        env["TRL_NATS_ATTEMPT"] = str(job.attempt)
        env["TRL_NATS_CACHE_DIR"] = str(self.cfg.state_dir / "cache")  # reference log-probs shared across attempts
        env["PYTHONUNBUFFERED"] = "1"
        if self.cfg.device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in job.gpus)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
            env.setdefault("OMP_NUM_THREADS", str(threads_per_slot(len(self.cfg.gpus))))
        return env

    async def _run_job(self, job: RunningJob) -> None:
        spec = job.spec
        self._emit(
            spec,
            job.attempt,
            StatusEvent(
                job_id=spec.job_id,
                attempt=job.attempt,
                state=JobState.in_progress,
                agent=self.id,
                message=f"claimed by {self.id} on {self.cfg.node} ({self.cfg.device} {job.gpus})",
            ),
            job,
        )
        try:
            rc, error = await self._train(job)
        except Exception as exc:
            log.exception("job %s: agent-side failure", spec.job_id)
            rc, error = None, f"agent error: {exc}"
        try:
            await self._finish(job, rc, error)
        finally:
            self.running.pop(spec.job_id, None)
            self._release(job.gpus)
            await self._heartbeat_once()

    async def _train(self, job: RunningJob) -> tuple[int | None, str | None]:
        """Run the job's training to its end; returns (exit code, error)."""
        try:
            args = await self._prepare(job)
        except Exception as exc:
            return None, f"could not prepare the job: {exc}"
        if self.cfg.recipe_override == INLINE_NOOP:
            return 0, None
        if job.cancel_reason is not None or job.handed_back:
            return None, None
        sock = EventSocket(
            self._socket_path(job),
            job_id=job.spec.job_id,
            attempt=job.attempt,
            node=self.cfg.node,
            on_event=lambda e: self._on_training_event(job, e),
        )
        await sock.start()
        cmd = torchrun_command(
            self.cfg.recipe_override or RECIPES[job.spec.kind],
            len(job.gpus),
            args,
            rdzv_endpoint=f"127.0.0.1:{free_port()}",
            run_id=f"{job.spec.job_id}-{job.attempt}",
        )
        job.proc = TrainingProcess(cmd, env=self._env(job), cwd=job.workdir, log_path=job.workdir / "train.log")
        keepalive = asyncio.create_task(self._keepalive(job))
        try:
            await job.proc.start()
            rc = await job.proc.wait()
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            await sock.close()
        return rc, (f"training exited with code {rc}:\n{job.proc.error_tail()}" if rc != 0 else None)

    def _socket_path(self, job: RunningJob) -> Path:
        digest = hashlib.sha256(f"{job.spec.job_id}.{job.attempt}".encode()).hexdigest()[:16]
        return self.sock_dir / f"{digest}.sock"

    async def _keepalive(self, job: RunningJob) -> None:
        """Keep the claim alive, write progress, and notice a cancel or a lost claim."""
        jid = job.spec.job_id
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(min(self.cfg.progress_write_s, self.cfg.keepalive_s))
            if time.monotonic() - last_ping >= self.cfg.keepalive_s:
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
                    change=lambda r, p=progress: _progress_fields(r, p),
                )
            except LostClaim:
                await self._lost_claim(job)
                return
            except IllegalTransition:
                return
            except Exception as exc:  # broker restarting: try again next round
                log.info("progress of %s not written: %s", jid, exc)
                if progress:
                    job.pending_progress = {**progress, **job.pending_progress}
                continue
            if record.cancel_requested and job.cancel_reason is None:
                await self._cancel(job, record.error or "cancelled by user")

    async def _finish(self, job: RunningJob, rc: int | None, error: str | None) -> None:
        """Write the final state (CAS, owner-guarded), then settle the message."""
        spec, jid, attempt = job.spec, job.spec.job_id, job.attempt
        if job.lost_claim:
            return  # the new owner decides; never ack a message that is not ours
        if job.cancel_reason is not None:
            to, message, settle = JobState.cancelled, job.cancel_reason, "ack"
        elif job.handed_back:
            to, message, settle = JobState.scheduled, f"handed back by {self.id} (agent stopping)", "nak"
        elif rc == 0:
            to, message, settle = JobState.completed, "completed", "ack"
        elif attempt < spec.max_attempts:
            to, message, settle = JobState.scheduled, f"attempt {attempt} failed; retrying", "nak"
        else:
            to, message, settle = JobState.failed, f"failed after {attempt} attempt(s)", "term"
        progress = job.pending_progress

        def change(r: JobRecord) -> dict:
            fields: dict = _progress_fields(r, progress)
            if to is JobState.scheduled:
                fields.update(owner=None, allocation=[], error=error)
                if job.handed_back:
                    fields["attempt"] = max(0, r.attempt - 1)  # a hand-back is not a failed attempt
            elif to is JobState.completed:
                fields.update(error=None, finished_at=now())
            else:
                fields["error"] = error if to is JobState.failed else message
            return fields

        try:
            record = await self.store.transition(jid, to, owner=self.id, attempt=attempt, change=change)
        except (LostClaim, IllegalTransition) as exc:
            log.warning("job %s: final state not written: %s", jid, exc)
            return
        self._emit(
            spec,
            record.attempt if to is JobState.scheduled else attempt,
            StatusEvent(
                job_id=jid,
                attempt=attempt,
                state=to,
                agent=self.id,
                message=message if not error or to is JobState.completed else f"{message}: {error}",
            ),
            job,
        )
        try:
            await self.events.flush(timeout=30)
        except TimeoutError:
            log.warning("job %s: events still queued after 30s", jid)
        with contextlib.suppress(Exception):
            if settle == "ack":
                await job.msg.ack_sync(timeout=self.settings.request_timeout)
            elif settle == "nak":
                await job.msg.nak(delay=0 if job.handed_back else self.cfg.retry_backoff_s * attempt)
            else:
                await job.msg.term()
        log.info("job %s attempt %d -> %s", jid, attempt, to.value)


def _progress_fields(record: JobRecord, progress: dict) -> dict:
    """Record fields for the latest metrics: steps never go backwards, and metrics merge so the
    run's closing summary (train_runtime, ...) joins the last step's loss instead of replacing it."""
    if not progress or progress.get("step", 0) < record.step:
        return {}
    fields = dict(progress)
    fields["last_metrics"] = {**record.last_metrics, **progress.get("last_metrics", {})}
    if fields.get("total_steps") is None:
        fields.pop("total_steps", None)
    return fields


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b.parent).st_dev
    except OSError:
        return False
