"""The gang side of one agent: the board, leading and joining, watching peers while training.

See the package docstring (``gang/__init__.py``) for the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from trl_nats.messages import GangState, JobRecord, JobSpec, Resources
from trl_nats.store import JobStore
from trl_nats_agent.gang.board import Board
from trl_nats_agent.gang.leader import Leader
from trl_nats_agent.gang.member import Member
from trl_nats_agent.job import RunningJob
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.node import Node
from trl_nats_agent.policy import AgentPolicy

log = logging.getLogger("trl_nats_agent.gang")


class Gangs:
    """Leads gangs for the multi-node jobs this agent fetches and joins the gangs of others."""

    def __init__(
        self,
        kv: KeyValue,
        node: Node,
        store: JobStore,
        policy: AgentPolicy,
        metrics: AgentMetrics,
        *,
        stopping: asyncio.Event,
        check_claimable: Callable[[Msg, JobSpec], Awaitable[JobRecord | None]],
        new_job: Callable[..., RunningJob],
        forget_job: Callable[[str], None],
        run_job: Callable[[RunningJob], Awaitable[None]],
        train: Callable[[RunningJob], Awaitable[tuple[int | None, str | None]]],
        emit_log: Callable[[JobSpec, int, str], None],
        keepalive_s: float,
    ) -> None:
        self.node = node
        self.stopping = stopping
        self.keepalive_s = keepalive_s
        self.board = Board(kv, node.id, node.alive)
        self._tasks: set[asyncio.Task] = set()
        self.leader = Leader(
            self.board,
            node,
            store,
            metrics,
            stopping=stopping,
            spawn=self.spawn,
            check_claimable=check_claimable,
            new_job=lambda spec, attempt, msg, gpus, launch, run: new_job(spec, attempt, msg, gpus, launch, run=run),
            run_job=run_job,
            emit_log=emit_log,
        )
        self.member = Member(
            self.board,
            node,
            store,
            policy,
            metrics,
            stopping=stopping,
            spawn=self.spawn,
            new_job=lambda spec, attempt, gpus, launch: new_job(spec, attempt, None, gpus, launch),
            forget_job=forget_job,
            train=train,
        )

    @property
    def queues(self) -> list[tuple[str, int]]:
        """(gang queue, GPUs per node) for every node shape this agent can host."""
        return [
            (Resources(nodes=2, gpus_per_node=r.gpus_per_node, gpu_type=r.gpu_type).queue, r.gpus_per_node)
            for r in self.node.shapes
        ]

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _active(self) -> bool:
        """The watch runs until the agent stops and its gang tasks (which read the view) are done."""
        return not self.stopping.is_set() or bool(self._tasks)

    async def run(self) -> None:
        """Keep the board current and join gangs when there is room; until the agent stops."""
        await self.board.follow(self._active, self.member.maybe_join)

    def lead(self, msg: Msg, spec: JobSpec, gpus: list[int]) -> None:
        """Lead a gang for a fetched multi-node job (``gpus`` reserved for node 0), in the background."""
        self.spawn(self.leader.lead(msg, spec, gpus, self.keepalive_s), f"gang-lead-{spec.job_id}")

    def describe(self, job: RunningJob) -> str:
        return self.leader.describe(job)

    async def settle(self, job: RunningJob, rc: int | None, error: str | None) -> tuple[int | None, str | None]:
        return await self.leader.settle(job, rc, error)

    # -- while training: every node watches the others ------------------------------
    async def monitor(self, job: RunningJob, stop: Callable[[], Awaitable[None]]) -> None:
        """Stop this node's training (``stop``) when the gang stops or a peer disappears."""
        jid = job.spec.job_id
        launch = job.gang
        assert launch is not None
        while True:
            await self.board.wait_change(1.0)
            rec = self.board.mine(jid)
            reason = None
            if rec is None or rec.attempt != job.attempt:
                reason = "its gang is gone"
            elif rec.state is GangState.stopping:
                reason = rec.reason or "the gang is stopping"
            else:
                for m in rec.members:
                    if m.agent != self.node.id and m.exit_code is None and not await self.node.alive(m.agent):
                        reason = f"node {m.node_rank} ({m.agent}) stopped heartbeating"
                        break
                    if m.agent != self.node.id and m.exit_code not in (None, 0):
                        reason = f"node {m.node_rank} ({m.agent}) ended with {m.exit_code}"
                        break
            if reason is None:
                continue
            log.warning("gang %s: stopping node %d: %s", jid, launch.node_rank, reason)
            if launch.leader and rec is not None and rec.state is GangState.running:
                await self.leader.set_state(jid, job.attempt, GangState.stopping, reason)
            job.gang_stop_reason = reason
            await stop()
            return
