"""Leading a gang: form it for a fetched multi-node job, claim the job for it, and settle its one outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.errors import KeyWrongLastSequenceError

from trl_nats.messages import Allocation, GangMember, GangRecord, GangState, JobRecord, JobSpec, JobState, now
from trl_nats.ports import free_port
from trl_nats.store import IllegalTransition, JobStore, LostClaim
from trl_nats_agent.gang import protocol
from trl_nats_agent.gang.board import Board
from trl_nats_agent.job import RunningJob
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.node import Node

log = logging.getLogger("trl_nats_agent.gang")

# (spec, attempt, msg, gpus, launch, run) -> the RunningJob, registered with the agent
NewJob = Callable[[JobSpec, int, Msg, list[int], protocol.GangLaunch, int], RunningJob]


class Leader:
    def __init__(
        self,
        board: Board,
        node: Node,
        store: JobStore,
        metrics: AgentMetrics,
        *,
        stopping: asyncio.Event,
        spawn: Callable[[Awaitable, str], asyncio.Task],
        check_claimable: Callable[[Msg, JobSpec], Awaitable[JobRecord | None]],
        new_job: NewJob,
        run_job: Callable[[RunningJob], Awaitable[None]],
        emit_log: Callable[[JobSpec, int, str], None],
    ) -> None:
        self.board = board
        self.node = node
        self.cfg = node.cfg
        self.store = store
        self.metrics = metrics
        self.stopping = stopping
        self.spawn = spawn
        self.check_claimable = check_claimable
        self.new_job = new_job
        self.run_job = run_job
        self.emit_log = emit_log

    @property
    def id(self) -> str:
        return self.node.id

    async def lead(self, msg: Msg, spec: JobSpec, gpus: list[int], keepalive_s: float) -> None:
        """Form a gang for ``spec`` (fetched by this agent, ``gpus`` reserved), then run it or put it back."""
        jid = spec.job_id
        keepalive = self.spawn(_keep_message(msg, keepalive_s), f"gang-keepalive-{jid}")
        handed_to_run = False
        try:
            record = await self.check_claimable(msg, spec)
            if record is None:
                return
            formed = await self._form(msg, spec, record, gpus)
            if formed is None:
                return
            gang, revision = formed
            job = await self._claim(msg, spec, record, gang, revision, gpus)
            if job is None:
                return
            keepalive.cancel()
            handed_to_run = True
            job.task = asyncio.current_task()
            await self.run_job(job)
        except Exception:
            log.exception("leading gang %s failed", jid)
            with contextlib.suppress(Exception):
                await self._abort(jid, "leader error")
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.cfg.retry_backoff_s)
        finally:
            keepalive.cancel()
            if not handed_to_run:
                self.node.release(gpus)

    async def _form(self, msg: Msg, spec: JobSpec, record: JobRecord, gpus: list[int]) -> tuple[GangRecord, int] | None:
        jid = spec.job_id
        res = spec.resources
        timeout = self.cfg.gang_timeout_s
        addr = self.node.addr
        gang = GangRecord(
            job_id=jid,
            leader=self.id,
            nodes=res.nodes,
            gpus_per_node=res.gpus_per_node,
            node_pool=res.node_pool,
            submitted_at=record.submitted_at,
            rdzv_endpoint=f"{protocol.host(addr)}:{free_port(addr)}",
            timeout_s=timeout,
            members=[GangMember(agent=self.id, node=self.cfg.node, addr=addr, gpus=gpus, node_rank=0)],
        )
        older = protocol.older_forming(self.board.records(), gang, now())
        if older is not None:  # known already: do not even start collecting members
            self.metrics.gang_outcome("yielded")
            self.emit_log(spec, record.attempt, f"gang: yielded to the older gang of {older.job_id}; back to the queue")
            await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        revision = await self.board.create(gang)
        if revision is None:
            await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        self.board.remember(gang, revision)
        started = time.monotonic()
        self.emit_log(
            spec, record.attempt, f"gang: forming {res.nodes} nodes x {res.gpus_per_node} GPU(s), led by {self.id}"
        )
        while True:
            entry = self.board.view.get(jid)
            current = entry[0] if entry else None
            if current is None or current.leader != self.id or current.created_at != gang.created_at:
                log.warning("gang %s: our forming record was replaced; putting the job back", jid)
                await msg.nak(delay=self.cfg.retry_backoff_s)
                self.metrics.gang_outcome("lost")
                return None
            if len(current.members) >= current.nodes:
                self.metrics.gang_outcome("formed")
                self.metrics.gang_reserved(time.monotonic() - started)
                return current, entry[1]
            older = protocol.older_forming(self.board.records(), current, now())
            waited = time.monotonic() - started
            reason = None
            if older is not None:
                reason, outcome = f"yielded to the older gang of {older.job_id}", "yielded"
            elif waited > timeout:
                joined = len(current.members)
                reason, outcome = f"timed out: {joined} of {current.nodes} nodes joined in {waited:.0f}s", "timeout"
            elif self.stopping.is_set():
                reason, outcome = f"leader {self.id} is stopping", "stopping"
            if reason is not None:
                await self._abort(jid, reason)
                self.metrics.gang_outcome(outcome)
                log.info("gang %s: %s; the job goes back to the queue", jid, reason)
                self.emit_log(spec, record.attempt, f"gang: {reason}; back to the queue")
                await msg.nak(delay=0 if outcome == "stopping" else self.cfg.retry_backoff_s)
                return None
            await self.board.wait_change()

    async def _abort(self, job_id: str, reason: str) -> None:
        await self.board.cas(job_id, lambda rec: protocol.abort(rec, self.id, reason))
        await self.board.delete(job_id)

    async def set_state(self, job_id: str, attempt: int, state: GangState, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.board.cas(job_id, lambda rec: protocol.move(rec, self.id, attempt, state, reason))

    async def _claim(
        self, msg: Msg, spec: JobSpec, record: JobRecord, gang: GangRecord, revision: int, gpus: list[int]
    ) -> RunningJob | None:
        """Every node is in: claim the job for the gang (CAS), then tell the members to start."""
        jid = spec.job_id
        gpu_type = self.node.gpu_type
        allocation = [Allocation(agent=m.agent, node=m.node, gpus=m.gpus, gpu_type=gpu_type) for m in gang.members]
        try:
            claimed = await self.store.claim(record, self.id, allocation)
        except (LostClaim, IllegalTransition) as exc:
            log.info("gang %s formed but the job was not claimed: %s", jid, exc)
            await self._abort(jid, f"job not claimable: {exc}")
            if isinstance(exc, IllegalTransition) and exc.record.state.terminal:
                await msg.ack()
            else:
                await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        attempt = claimed.attempt
        running = protocol.start(gang, attempt, now())
        try:
            await self.board.update(running, revision)
        except KeyWrongLastSequenceError:
            # a member left at its own deadline just now: hand the claim back and try again later
            log.warning("gang %s changed while starting; handing the job back", jid)
            await self.store.transition(
                jid,
                JobState.scheduled,
                owner=self.id,
                attempt=attempt,
                change=lambda r: {"owner": None, "allocation": [], "attempt": max(0, r.attempt - 1)},
            )
            await self._abort(jid, "a member left while the gang was starting")
            await msg.nak(delay=self.cfg.retry_backoff_s)
            return None
        self.metrics.claimed(record)
        job = self.new_job(spec, attempt, msg, gpus, protocol.launch(running, self.id, self.node.ifname), claimed.runs)
        log.info(
            "gang %s attempt %d formed: %s",
            jid,
            attempt,
            ", ".join(f"node {m.node_rank} {m.agent}@{m.addr}" for m in running.members),
        )
        return job

    def describe(self, job: RunningJob) -> str:
        """The claim message for a gang job's status event."""
        entry = self.board.view.get(job.spec.job_id)
        rec = entry[0] if entry else None
        nodes = ", ".join(f"node {m.node_rank} {m.agent} {m.gpus}" for m in rec.members) if rec else "?"
        return f"claimed by a gang of {job.gang.nnodes} nodes led by {self.id}: {nodes}"

    async def settle(self, job: RunningJob, rc: int | None, error: str | None) -> tuple[int | None, str | None]:
        """The leader's training ended: stop the gang if needed, wait for every node, return one outcome."""
        jid = job.spec.job_id
        if rc != 0 or job.cancel_reason or job.handed_back:
            why = job.cancel_reason and f"cancelled: {job.cancel_reason}"
            why = why or (
                "leader handed back (agent stopping)" if job.handed_back else f"node 0 ({self.id}) ended with {rc}"
            )
            await self.set_state(jid, job.attempt, GangState.stopping, why)
        deadline = time.monotonic() + self.cfg.cancel_grace_s + 60.0
        while True:
            rec = self.board.mine(jid)
            if rec is None:
                break
            waiting = [m for m in rec.members if m.agent != self.id and m.exit_code is None]
            dead = [m for m in waiting if not await self.node.alive(m.agent)]
            if not waiting or len(dead) == len(waiting) or time.monotonic() > deadline:
                break
            await self.board.wait_change(1.0)
        rec = self.board.mine(jid)
        await self.board.delete(jid)
        if rec is None:
            return rc, error or "the gang record disappeared"
        rc, error, handed_back = protocol.settle(rec, self.id, rc, error, job.gang_stop_reason)
        if handed_back:
            job.handed_back = True
        return rc, error


async def _keep_message(msg: Msg, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):
            await msg.in_progress()
