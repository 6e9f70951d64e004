"""This node: its GPUs (reserved and released by jobs), its heartbeat, and the liveness of other agents.

The heartbeat is this agent's record in the agents KV bucket, written every
``heartbeat_s``; the bucket's TTL removes it when the agent dies. Liveness of
another agent (a claim's owner, a gang member) is "its record is there and fresh".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from trl_nats import retry
from trl_nats.messages import AgentRecord, BadMessage, GpuInfo, JobRecord, decode, encode, now
from trl_nats_agent import __version__
from trl_nats_agent.capacity import pools_for, refresh_utilization
from trl_nats_agent.settings import AgentSettings

log = logging.getLogger("trl_nats_agent")


class Node:
    def __init__(self, cfg: AgentSettings, *, agent_ttl_s: float, running: Callable[[], list[str]]) -> None:
        self.cfg = cfg
        self.id = cfg.agent_id
        self.agent_ttl_s = agent_ttl_s
        self.running = running  # the job ids this agent runs now, for its heartbeat
        self.gpus: list[GpuInfo] = list(cfg.gpus)
        self.free: list[int] = [g.index for g in cfg.gpus]
        self.shapes = pools_for(self.gpus)
        self.pools = [r.pool for r in self.shapes]
        self.started_at = now()
        self.addr = cfg.advertise_addr
        self.ifname: str | None = None
        self.capacity_changed = asyncio.Event()
        self.agents_kv = None  # the agents bucket, once connected

    # -- GPUs ------------------------------------------------------------------------
    def reserve(self, n: int) -> list[int]:
        """Take ``n`` free GPUs (the caller checked there are that many)."""
        gpus, self.free = self.free[:n], self.free[n:]
        self.capacity_changed.set()
        return gpus

    def release(self, gpus: list[int]) -> None:
        self.free = sorted(self.free + gpus)
        self.capacity_changed.set()

    @property
    def gpu_type(self) -> str | None:
        return None if self.cfg.device == "cpu" else self.gpus[0].name

    # -- heartbeat -------------------------------------------------------------------
    def record(self) -> AgentRecord:
        return AgentRecord(
            agent_id=self.id,
            node=self.cfg.node,
            version=__version__,
            device="cuda" if self.cfg.device == "cuda" else "cpu",
            gpus=self.gpus,
            free_gpus=sorted(self.free),
            running_jobs=sorted(self.running()),
            pools=self.pools,
            started_at=self.started_at,
        )

    async def beat(self) -> None:
        try:
            # retried through an election for up to half the TTL, so the beat lands before the record expires
            await retry.kv_put(self.agents_kv, self.id, encode(self.record()), bound_s=self.agent_ttl_s / 2)
        except Exception as exc:  # broker restarting: the next beat will do
            log.info("heartbeat not written: %s", exc)

    async def beat_forever(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            if self.cfg.device == "cuda":  # utilisation changes; the fleet view shows the latest reading
                self.gpus = await asyncio.to_thread(refresh_utilization, self.gpus)
            await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.cfg.heartbeat_s)

    async def forget(self) -> None:
        with contextlib.suppress(Exception):
            await self.agents_kv.delete(self.id)

    # -- other agents ------------------------------------------------------------------
    async def fresh_heartbeat(self, agent_id: str) -> AgentRecord | None:
        """``agent_id``'s heartbeat record if it is in the agents bucket and younger than the TTL."""
        try:
            # read through an election of the agents bucket: a leaderless moment is not a dead owner
            entry = await retry.retry_write(
                lambda: self.agents_kv.get(agent_id), f"heartbeat of {agent_id}", bound_s=self.agent_ttl_s
            )
        except Exception:  # not found, expired, or the broker is restarting: not known alive
            return None
        if not entry.value:
            return None
        try:
            other = decode(entry.value, AgentRecord)
        except BadMessage:
            return None
        return other if now() - other.heartbeat_at < self.agent_ttl_s else None

    async def alive(self, agent_id: str) -> bool:
        return await self.fresh_heartbeat(agent_id) is not None

    async def owner_alive(self, record: JobRecord) -> bool:
        """The record's owner heartbeats and still lists the job as running."""
        if not record.owner:
            return False
        owner = await self.fresh_heartbeat(record.owner)
        return owner is not None and record.job_id in owner.running_jobs
