"""Joining other agents' gangs, running our node of one, and watching the peers while it trains."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from nats.js.errors import KeyWrongLastSequenceError

from trl_nats.messages import BadMessage, GangState, JobSpec, now
from trl_nats.store import JobNotFound, JobStore
from trl_nats_agent.gang import protocol
from trl_nats_agent.gang.board import Board
from trl_nats_agent.job import RunningJob
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.node import Node
from trl_nats_agent.policy import AgentPolicy

log = logging.getLogger("trl_nats_agent.gang")

# (spec, attempt, gpus, launch) -> the RunningJob, registered with the agent
NewJob = Callable[[JobSpec, int, list[int], protocol.GangLaunch], RunningJob]


class Member:
    def __init__(
        self,
        board: Board,
        node: Node,
        store: JobStore,
        policy: AgentPolicy,
        metrics: AgentMetrics,
        *,
        stopping: asyncio.Event,
        spawn: Callable[[Awaitable, str], asyncio.Task],
        new_job: NewJob,
        forget_job: Callable[[str], None],
        train: Callable[[RunningJob], Awaitable[tuple[int | None, str | None]]],
    ) -> None:
        self.board = board
        self.node = node
        self.store = store
        self.policy = policy
        self.metrics = metrics
        self.stopping = stopping
        self.spawn = spawn
        self.new_job = new_job
        self.forget_job = forget_job
        self.train = train
        self._joining: set[str] = set()
        self._refused: dict[str, str] = {}  # job id -> why this agent's policy refuses to run it

    @property
    def id(self) -> str:
        return self.node.id

    # -- joining someone else's gang ----------------------------------------------------
    async def maybe_join(self) -> None:
        if self.stopping.is_set():
            return
        at = now()
        candidates = sorted(
            (
                (rec, rev)
                for rec, rev in self.board.view.values()
                if protocol.joinable(rec, self.id, self.node.pools, at) and rec.job_id not in self._joining
            ),
            key=lambda rr: rr[0].order,
        )
        for rec, rev in candidates:
            if len(self.node.free) < rec.gpus_per_node or rec.job_id in self._refused:
                continue
            if not await self._acceptable(rec.job_id):
                continue
            gpus = self.node.reserve(rec.gpus_per_node)
            new = protocol.join(rec, self.id, self.node.cfg.node, self.node.addr, gpus, now())
            try:
                await self.board.update(new, rev)
            except KeyWrongLastSequenceError:
                self.node.release(gpus)  # it changed under us: the watch brings the new state, try again then
                continue
            except Exception as exc:
                self.node.release(gpus)
                log.info("joining gang %s failed: %s", rec.job_id, exc)
                continue
            self._joining.add(rec.job_id)
            self.metrics.gang_joined()
            log.info("joined gang %s as node %d of %d", rec.job_id, len(rec.members), rec.nodes)
            self.spawn(self._run(rec.job_id, gpus, rec.timeout_s), f"gang-member-{rec.job_id}")

    async def _acceptable(self, job_id: str) -> bool:
        """Would this agent run the job at all (its operator's policy: model roots, remote code, outputs)?"""
        try:
            spec = (await self.store.get(job_id)).spec
            self.policy.check(spec)
        except (JobNotFound, BadMessage) as exc:
            self._refused[job_id] = str(exc)
            log.warning("not joining the gang of %s: %s", job_id, exc)
            return False
        return True

    async def _run(self, job_id: str, gpus: list[int], timeout_s: float) -> None:
        """Wait for the gang to start (or give up on our own clock), then run our node of it."""
        give_up = time.monotonic() + timeout_s + protocol.MEMBER_GRACE_S
        started_wait = time.monotonic()
        try:
            while True:
                rec = self.board.mine(job_id)
                if rec is None or rec.state in (GangState.aborted, GangState.stopping):
                    reason = rec.reason if rec else "gang record removed"
                    log.info("gang %s did not start (%s): releasing GPUs %s", job_id, reason, gpus)
                    return
                if rec.state is GangState.running:
                    break
                if time.monotonic() > give_up or self.stopping.is_set():
                    log.warning(
                        "gang %s still forming %.0fs after we joined: leaving it, releasing GPUs",
                        job_id,
                        timeout_s + protocol.MEMBER_GRACE_S,
                    )
                    await self._leave(job_id)
                    return
                await self.board.wait_change()
            self.metrics.gang_reserved(time.monotonic() - started_wait)
            try:
                spec = (await self.store.get(job_id)).spec
            except (JobNotFound, BadMessage) as exc:
                log.error("gang %s: job record unreadable (%s)", job_id, exc)
                await self._report_exit(job_id, rec.attempt, None, f"member {self.id}: job record unreadable: {exc}")
                return
            job = self.new_job(spec, rec.attempt, gpus, protocol.launch(rec, self.id, self.node.ifname))
            await self.node.beat()
            job.task = asyncio.current_task()
            try:
                rc, error = await self.train(job)
            except Exception as exc:
                log.exception("gang %s: member-side failure", job_id)
                rc, error = None, f"agent error on {self.id}: {exc}"
            await self._report_exit(job_id, job.attempt, rc, error, handed_back=job.handed_back)
            log.info("gang %s attempt %d: node %d ended with %s", job_id, job.attempt, job.gang.node_rank, rc)
        finally:
            self._joining.discard(job_id)
            self.forget_job(job_id)
            self.node.release(gpus)
            await self.node.beat()

    async def _leave(self, job_id: str) -> None:
        try:
            await self.board.cas(job_id, lambda rec: protocol.leave(rec, self.id))
        except Exception as exc:
            log.info("gang %s: leaving not recorded: %s", job_id, exc)

    async def _report_exit(
        self, job_id: str, attempt: int, rc: int | None, error: str | None, *, handed_back: bool = False
    ) -> None:
        """Write our node's outcome into the gang; a failure also stops every other node."""
        try:
            await self.board.cas(
                job_id, lambda rec: protocol.report_exit(rec, self.id, attempt, rc, error, handed_back)
            )
        except Exception as exc:
            log.warning("gang %s: exit of this node not recorded: %s", job_id, exc)
