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
from nats.js.errors import FetchTimeoutError

from trl_nats.artifacts.manifest import NATS_SCHEME
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
    LogEvent,
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
from trl_nats.topology import Topology, ensure_pool_consumer, ensure_topology
from trl_nats_agent import __version__, pausing
from trl_nats_agent.advisories import QUEUE_GROUP, MaxDeliveriesWatcher, advisory_subject
from trl_nats_agent.capacity import pools_for, refresh_utilization, threads_per_slot
from trl_nats_agent.checkpoints import DEFAULT_MAX_BYTES, CheckpointStore, CheckpointStoreError
from trl_nats_agent.gang import GangLaunch, Gangs
from trl_nats_agent.launcher import TrainingProcess, free_port, torchrun_command
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.network import advertise_addr_for, interface_of
from trl_nats_agent.policy import AgentPolicy
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
    keepalive_s: float | None = None  # None: a third of the pool consumers' ack wait
    fetch_timeout_s: float = 2.0
    cancel_grace_s: float = 10.0
    drain_timeout_s: float = 0.0  # on shutdown: wait this long for running jobs, then hand them back
    retry_backoff_s: float = 2.0
    progress_write_s: float = 1.0  # at most one KV progress write per job this often
    recipe_override: str | None = None  # a module to run instead of the kind's recipe (tests, benchmarks)
    checkpoint_store: str = "nats"  # "nats", a shared directory, or "local" (see checkpoints.py)
    checkpoint_max_bytes: int = DEFAULT_MAX_BYTES
    output_root: Path | None = None  # None: <state_dir>/outputs; job output dirs must stay inside it
    model_roots: list[Path] = field(default_factory=list)  # local model paths must be under one (empty: any)
    allow_remote_code: bool = False  # operator's consent to trust_remote_code jobs
    gang_timeout_s: float = 60.0  # a multi-node job's gang must form within this, else it goes back to the queue
    advertise_addr: str = ""  # address other nodes reach this one at; "" = the route's source address to NATS
    metrics_port: int | None = None  # serve Prometheus metrics here (0: any free port); None: no endpoint
    metrics_host: str = "0.0.0.0"

    def __post_init__(self) -> None:
        if not self.agent_id:
            self.agent_id = f"{self.node}-{uuid.uuid4().hex[:6]}"
        self.agent_id = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in self.agent_id)


@dataclass
class RunningJob:
    spec: JobSpec
    attempt: int
    msg: Msg | None  # None on the member nodes of a multi-node job: the leader holds the message
    gpus: list[int]
    workdir: Path
    output_dir: Path
    run: int = 0  # the record's claim counter: numbers this claim's event message ids
    proc: TrainingProcess | None = None
    seq: int = 0
    checkpoint_tasks: list[asyncio.Task] = field(default_factory=list)
    cancel_reason: str | None = None
    lost_claim: bool = False
    handed_back: bool = False
    last_progress_write: float = 0.0
    pending_progress: dict = field(default_factory=dict)
    task: asyncio.Task | None = None
    gang: GangLaunch | None = None  # set for a node of a multi-node job
    gang_stop_reason: str | None = None

    @property
    def owns_record(self) -> bool:
        """This agent writes the job's record and settles its message (single-node, or the gang leader)."""
        return self.gang is None or self.gang.leader


class Agent:
    def __init__(self, settings: NatsSettings, config: AgentConfig) -> None:
        self.settings = settings
        self.names = settings.names
        self.cfg = config
        if config.keepalive_s is None:
            config.keepalive_s = settings.ack_wait_s / 3
        self.id = config.agent_id
        self.policy = AgentPolicy(
            output_root=config.output_root or config.state_dir / "outputs",
            model_roots=config.model_roots,
            allow_remote_code=config.allow_remote_code,
        )
        self.checkpoints: CheckpointStore | None = None
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
        self.gangs = Gangs(self)
        self.metrics = AgentMetrics(self)
        self.addr = config.advertise_addr
        self.ifname: str | None = None
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
        if not self.addr:
            try:
                self.addr = advertise_addr_for(self.nc.connected_url.geturl())
            except OSError as exc:  # only multi-node jobs need it: run single-node work regardless
                log.warning("cannot tell this node's address (%s); multi-node jobs will use 127.0.0.1", exc)
                self.addr = "127.0.0.1"
        self.ifname = interface_of(self.addr)
        if self.cfg.metrics_port is not None:
            self.metrics.serve(self.cfg.metrics_port, self.cfg.metrics_host)
        self.topo = await ensure_topology(js, self.settings)
        self.store = JobStore(self.topo.jobs)
        self.events = EventPublisher(js).start()
        self.checkpoints = CheckpointStore(
            self.cfg.checkpoint_store, artifacts=self.topo.artifacts, max_bytes=self.cfg.checkpoint_max_bytes
        )
        control = await self.nc.subscribe(self.names.control(self.id), cb=self._on_control)
        self.advisories = MaxDeliveriesWatcher(
            js,
            self.store,
            self.names.jobs_stream,
            owner_alive=self._owner_alive,
            emit=lambda rec, ev: self._emit(rec.spec, rec.attempt, ev, run=rec.runs),
            agent_id=self.id,
        )
        advisories_sub = await self.nc.subscribe(
            advisory_subject(self.names.jobs_stream), queue=QUEUE_GROUP, cb=self.advisories.on_advisory
        )
        log.info(
            "agent %s on %s (%s): %d %s slot(s), pools %s",
            self.id,
            self.cfg.node,
            self.addr,
            len(self.cfg.gpus),
            self.cfg.device,
            self.pools,
        )
        await self._heartbeat_once()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeat_loop())
                sweeper = tg.create_task(self.advisories.sweep_forever(self._stopping))
                fetchers = [tg.create_task(self._fetch_loop(r.pool, r.gpus_per_node)) for r in self.shapes]
                fetchers += [tg.create_task(self._fetch_loop(q, need, max_deliver=-1)) for q, need in self.gangs.queues]
                tg.create_task(self.gangs.run())
                await self._stopping.wait()
                for f in [*fetchers, sweeper]:
                    f.cancel()
                await self._drain()
        finally:
            with contextlib.suppress(Exception):
                await control.unsubscribe()
                await advisories_sub.unsubscribe()
            await self.events.close()
            with contextlib.suppress(Exception):
                await self.topo.agents.delete(self.id)
            await self.nc.close()
            self.metrics.close()
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
            if self.cfg.device == "cuda":  # utilisation changes; the fleet view shows the latest reading
                self.cfg.gpus = await asyncio.to_thread(refresh_utilization, self.cfg.gpus)
            await self._heartbeat_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.heartbeat_s)

    # -- claiming --------------------------------------------------------------
    async def _fetch_loop(self, pool: str, need: int, max_deliver: int | None = None) -> None:
        """Fetch from ``pool`` only while this node has ``need`` free GPUs."""
        durable = await ensure_pool_consumer(self.topo.js, self.settings, pool, max_deliver=max_deliver)
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
                    await ensure_pool_consumer(self.topo.js, self.settings, pool, max_deliver=max_deliver)
                continue
            fetched_at = time.monotonic()
            for msg in msgs:
                await self._on_submission(msg, need, fetched_at)

    async def _on_submission(self, msg: Msg, need: int, fetched_at: float | None = None) -> None:
        try:
            spec = validate_spec(decode(msg.data, JobSpec))
            self.policy.check(spec)
        except BadMessage as exc:
            await self._reject(msg, str(exc))
            return
        if len(self.free) < need or self._stopping.is_set():
            # another pool's fetch took the room meanwhile: let another agent have it
            await msg.nak()
            return
        gpus = self.reserve(need)
        if spec.resources.nodes > 1:
            self.gangs.spawn(self.gangs.lead(msg, spec, gpus), f"gang-lead-{spec.job_id}")
            return
        try:
            claimed = await self._claim(msg, spec, gpus, fetched_at)
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
        if record.state is JobState.in_progress and record.owner != self.id:
            if await self._owner_alive(record):
                # redelivered while its owner still runs it (e.g. broker restart): not ours
                await msg.nak(delay=self.settings.ack_wait_s)
                return None
            log.warning("job %s: owner %s is gone; taking over", spec.job_id, record.owner)
        if record.attempt >= spec.max_attempts:
            await self._finish_exhausted(record)
            await msg.term()
            return None
        return record

    def new_running_job(
        self,
        spec: JobSpec,
        attempt: int,
        msg: Msg | None,
        gpus: list[int],
        gang: GangLaunch | None = None,
        *,
        run: int = 0,
    ) -> RunningJob:
        return RunningJob(
            spec=spec,
            attempt=attempt,
            msg=msg,
            gpus=gpus,
            workdir=self.cfg.state_dir / "jobs" / spec.job_id / f"attempt-{attempt}",
            output_dir=self.policy.output_dir(spec),
            run=run,
            gang=gang,
        )

    async def _claim(
        self, msg: Msg, spec: JobSpec, gpus: list[int], fetched_at: float | None = None
    ) -> RunningJob | None:
        record = await self.check_claimable(msg, spec)
        if record is None:
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
                change=lambda r: {
                    "owner": self.id,
                    "attempt": attempt,
                    "runs": r.runs + 1,
                    "allocation": [alloc],
                    "started_at": now(),
                },
            )
        except (LostClaim, IllegalTransition) as exc:
            log.info("job %s not claimed: %s", spec.job_id, exc)
            await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        self.claims += 1
        job = self.new_running_job(record.spec, attempt, msg, gpus, run=record.runs)
        self.running[spec.job_id] = job
        self.metrics.claimed(record, fetched_at)
        log.info("claimed %s attempt %d on %s %s", spec.job_id, attempt, self.cfg.device, gpus)
        return job

    async def fresh_heartbeat(self, agent_id: str) -> AgentRecord | None:
        """``agent_id``'s heartbeat record if it is in the agents bucket and younger than the TTL."""
        try:
            entry = await self.topo.agents.get(agent_id)
        except Exception:  # not found, expired, or the broker is restarting: not known alive
            return None
        if not entry.value:
            return None
        try:
            other = decode(entry.value, AgentRecord)
        except BadMessage:
            return None
        return other if now() - other.heartbeat_at < self.settings.agent_ttl_s else None

    async def _owner_alive(self, record: JobRecord) -> bool:
        if not record.owner:
            return False
        owner = await self.fresh_heartbeat(record.owner)
        return owner is not None and record.job_id in owner.running_jobs

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
                run=record.runs,
            )

    def reserve(self, n: int) -> list[int]:
        """Take ``n`` free GPUs (the caller checked there are that many)."""
        gpus, self.free = self.free[:n], self.free[n:]
        self._capacity_changed.set()
        return gpus

    def _release(self, gpus: list[int]) -> None:
        self.free = sorted(self.free + gpus)
        self._capacity_changed.set()

    # -- events ----------------------------------------------------------------
    def _emit(
        self, spec: JobSpec, attempt: int, event: Event, job: RunningJob | None = None, *, run: int | None = None
    ) -> None:
        base = spec.events_subject or self.names.events(spec.job_id)
        if job is not None:
            job.seq += 1
            seq, run = job.seq, job.run
        else:
            seq = int(time.time() * 1000)
        event = msgspec.structs.replace(event, seq=seq)
        msg_id = self.names.event_msg_id(spec.job_id, run if run is not None else attempt, seq)
        self._emit_raw(spec.job_id, base, attempt, event, msg_id=msg_id)

    def emit_log(self, spec: JobSpec, attempt: int, line: str, level: str = "info") -> None:
        self._emit(spec, attempt, LogEvent(job_id=spec.job_id, attempt=attempt, level=level, line=line))

    def _emit_raw(self, job_id: str, base: str, attempt: int, event: Event, *, msg_id: str) -> None:
        kind = type(event).__struct_config__.tag
        self.events.put(self.names.event(base, kind), encode(event), msg_id)

    def _on_training_event(self, job: RunningJob, event: Event) -> None:
        if isinstance(event, CheckpointEvent):
            # announced once stored (a resume point must be fetchable first), in order of arrival
            previous = job.checkpoint_tasks[-1] if job.checkpoint_tasks else None
            task = asyncio.get_running_loop().create_task(self._store_checkpoint(job, event, previous))
            job.checkpoint_tasks.append(task)
            return
        self._emit(job.spec, job.attempt, event, job)
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
        except (CheckpointStoreError, OSError) as exc:
            log.error("job %s: checkpoint %s not stored: %s", job.spec.job_id, ckpt.path, exc)
            self._emit(
                job.spec,
                job.attempt,
                LogEvent(
                    job_id=job.spec.job_id, attempt=job.attempt, level="error", line=f"checkpoint not stored: {exc}"
                ),
                job,
            )
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous  # events and the record list checkpoints in the order they were written
        self._emit(job.spec, job.attempt, msgspec.structs.replace(event, checkpoint=ckpt), job)
        replaced: list[str] = []

        def change(r: JobRecord) -> dict:
            fields: dict = {"checkpoints": [*r.checkpoints, ckpt]}
            latest = r.latest_checkpoint
            if ckpt.location and not ckpt.final and (latest is None or ckpt.step >= latest.step):
                fields["latest_checkpoint"] = ckpt
                replaced[:] = (
                    [latest.location] if latest and latest.location and latest.location != ckpt.location else []
                )
            return fields

        try:
            await self._write_until_done(
                lambda: self.store.transition(
                    job.spec.job_id, JobState.in_progress, owner=self.id, attempt=job.attempt, change=change
                ),
                f"checkpoint {ckpt.step} of {job.spec.job_id}",
            )
        except LostClaim:
            await self._lost_claim(job)
            return
        except IllegalTransition as exc:
            log.info("checkpoint of %s not recorded: %s", job.spec.job_id, exc)
            return
        for location in replaced:
            await self.checkpoints.forget(location)

    async def _write_until_done(self, write, what: str, timeout: float = 600.0):
        """Retry a store write through a broker restart; LostClaim and IllegalTransition are final answers."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            try:
                return await write()
            except (LostClaim, IllegalTransition, JobNotFound):
                raise
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("%s not written yet (%s: %s); retrying", what, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

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
        if job is None:
            log.warning("ignoring cancel of job %s: this agent does not run it", req.job_id)
            return
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
        resume = await (self._gang_resume_point(job) if job.gang else self._resume_point(job))
        args = ["--spec", str(job.workdir / "spec.json"), "--output", str(job.output_dir), "--resume", resume]
        args += ["--dataset", str(await self._fetch_dataset(spec.dataset, job.workdir / "dataset.jsonl"))]
        if spec.eval_dataset is not None:
            args += ["--eval-dataset", str(await self._fetch_dataset(spec.eval_dataset, job.workdir / "eval.jsonl"))]
        return args

    async def _resume_point(self, job: RunningJob) -> str:
        """``--resume`` for the recipe: the record's latest stored checkpoint, fetched here if it is newer than
        any complete checkpoint in this agent's output dir; else "auto" (the newest local one, if any)."""
        record = await self.store.get(job.spec.job_id)
        latest = record.latest_checkpoint
        if latest is None or not latest.location:
            return "auto"
        local = job.output_dir / f"checkpoint-{latest.step}"
        if (local / "trl_nats_complete.json").is_file():
            return str(local)
        try:
            path = await self.checkpoints.fetch(
                latest.location, latest.sha256, job.output_dir, [self.policy.output_root, *self._checkpoint_roots()]
            )
        except (CheckpointStoreError, OSError) as exc:
            line = f"cannot resume from checkpoint {latest.step} ({exc}); starting from the newest local one, if any"
            log.warning("job %s: %s", job.spec.job_id, line)
            self._emit(
                job.spec,
                job.attempt,
                LogEvent(job_id=job.spec.job_id, attempt=job.attempt, level="warning", line=line),
                job,
            )
            return "auto"
        line = f"resuming from checkpoint {latest.step} written by {latest.node} ({latest.location})"
        self._emit(job.spec, job.attempt, LogEvent(job_id=job.spec.job_id, attempt=job.attempt, line=line), job)
        return str(path)

    async def _gang_resume_point(self, job: RunningJob) -> str:
        """``--resume`` on every node of a multi-node job: the record's latest checkpoint if it is in the object
        store, which every node can fetch; else "never" (each node's local checkpoints are its own, so the nodes
        could not agree on one). A node that cannot fetch it fails the attempt rather than start elsewhere."""
        latest = (await self.store.get(job.spec.job_id)).latest_checkpoint
        if latest is None or not (latest.location or "").startswith(NATS_SCHEME):
            return "never"
        path = await self.checkpoints.fetch(latest.location, latest.sha256, job.output_dir, [])
        log.info("job %s: node resumes from checkpoint %d (%s)", job.spec.job_id, latest.step, latest.location)
        return str(path)

    def _checkpoint_roots(self) -> list[Path]:
        return [self.checkpoints.root] if self.checkpoints and self.checkpoints.root else []

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
        if job.owns_record:  # rank 0 runs here; a gang member's ranks have nothing to report
            env["TRL_NATS_EVENTS_SOCKET"] = str(self._socket_path(job))
        env["TRL_NATS_JOB_ID"] = job.spec.job_id
        env["TRL_NATS_ATTEMPT"] = str(job.attempt)
        env["TRL_NATS_CACHE_DIR"] = str(self.cfg.state_dir / "cache")  # reference log-probs shared across attempts
        env["PYTHONUNBUFFERED"] = "1"
        # every torch.load in the ranks (optimizer, scheduler, RNG state of a fetched checkpoint) refuses pickled code
        env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        env["TRL_NATS_ALLOW_REMOTE_CODE"] = "1" if self.cfg.allow_remote_code else "0"
        if job.gang is not None and job.gang.ifname:
            # the collectives must use the interface the other nodes reach us on (see network.py)
            env.setdefault("GLOO_SOCKET_IFNAME", job.gang.ifname)
            env.setdefault("NCCL_SOCKET_IFNAME", job.gang.ifname)
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
                message=self.gangs.describe(job)
                if job.gang
                else f"claimed by {self.id} on {self.cfg.node} ({self.cfg.device} {job.gpus})",
            ),
            job,
        )
        try:
            rc, error = await self._train(job)
        except Exception as exc:
            log.exception("job %s: agent-side failure", spec.job_id)
            rc, error = None, f"agent error: {exc}"
        if job.gang is not None:
            rc, error = await self.gangs.settle(job, rc, error)
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
            return await self._inline_noop(job)
        if job.cancel_reason is not None or job.handed_back:
            return None, None
        launch = job.gang
        sock = EventSocket(
            self._socket_path(job),
            job_id=job.spec.job_id,
            attempt=job.attempt,
            node=self.cfg.node,
            on_event=lambda e: self._on_training_event(job, e),
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
        job.proc = TrainingProcess(cmd, env=self._env(job), cwd=job.workdir, log_path=job.workdir / "train.log")
        watchers = [asyncio.create_task(self._keepalive(job))] if job.owns_record else []
        if launch is not None:
            watchers.append(asyncio.create_task(self.gangs.monitor(job)))
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
        return rc, (f"training exited with code {rc}:\n{job.proc.error_tail()}" if rc != 0 else None)

    async def _inline_noop(self, job: RunningJob) -> tuple[int | None, str | None]:
        """The job "runs" for noop.steps x noop.step_s seconds in the agent itself, claim kept alive meanwhile."""
        labels = job.spec.labels
        duration = int(labels.get("noop.steps", "0")) * float(labels.get("noop.step_s", "0.05"))
        if duration > 0 and not job.owns_record:  # a gang member: the leader keeps the claim
            await asyncio.sleep(duration)
        elif duration > 0:
            keepalive = asyncio.create_task(self._keepalive(job))
            try:
                await asyncio.sleep(duration)
            finally:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
        return (None, None) if job.cancel_reason or job.lost_claim else (0, None)

    def _nak_delay(self, job: RunningJob) -> float:
        if job.handed_back:
            # This agent's cancelled fetches stay open at the server until they expire; redelivered
            # sooner, the job would land in one of them and wait out a whole ack wait unseen.
            return self.cfg.fetch_timeout_s + 0.5
        return self.cfg.retry_backoff_s * job.attempt

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
            elif record.state is JobState.pausing:
                pausing.request_pause(job.output_dir)

    async def _finish(self, job: RunningJob, rc: int | None, error: str | None) -> None:
        """Write the final state (CAS, owner-guarded), then settle the message."""
        spec, jid, attempt = job.spec, job.spec.job_id, job.attempt
        if job.checkpoint_tasks:  # the record's checkpoint list is complete before the job ends
            _, pending = await asyncio.wait(job.checkpoint_tasks, timeout=600)
            for task in pending:
                task.cancel()
        if job.lost_claim:
            return  # the new owner decides; never ack a message that is not ours
        if job.cancel_reason is not None:
            to, message, settle = JobState.cancelled, job.cancel_reason, "ack"
        elif job.handed_back:
            to, message, settle = JobState.scheduled, f"handed back by {self.id} (agent stopping)", "nak"
        elif pausing.stopped_at_pause(rc, job.output_dir):
            to, message, settle = JobState.paused, "paused", "ack"
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
            elif to is JobState.paused:
                fields.update(pausing.paused_fields(r))
            else:
                fields["error"] = error if to is JobState.failed else message
            return fields

        try:
            record = await self._write_until_done(
                lambda: self.store.transition(jid, to, owner=self.id, attempt=attempt, change=change),
                f"final state of {jid}",
            )
        except (LostClaim, IllegalTransition, JobNotFound) as exc:
            log.warning("job %s: final state not written: %s", jid, exc)
            return
        except Exception as exc:  # NATS gone for ten minutes: the message is redelivered and another agent decides
            log.error("job %s: final state not written: %s", jid, exc)
            return
        if to is JobState.paused:
            message = pausing.paused_message(record, self.id)
        failed = job.cancel_reason is None and not job.handed_back and rc != 0 and to is not JobState.paused
        self.metrics.finished_attempt(to.value, failed=failed, retried=failed and to is JobState.scheduled)
        self._emit(
            spec,
            attempt,
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
        for i in range(5):  # an ack lost in a broker restart only costs a redelivery, which acks a finished job
            try:
                if settle == "ack":
                    await job.msg.ack_sync(timeout=self.settings.request_timeout)
                elif settle == "nak":
                    await job.msg.nak(delay=self._nak_delay(job))
                else:
                    await job.msg.term()
                break
            except Exception as exc:
                log.info("job %s: %s not confirmed (%s); retrying", jid, settle, exc)
                await asyncio.sleep(0.5 * (i + 1))
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
