"""The node agent: wires this node's parts together and runs them until it is stopped.

One agent per machine. ``node.py`` holds its GPUs and heartbeat; ``claims.py``
fetches and claims jobs from the pools its GPUs can serve; ``attempt.py`` runs
each claimed attempt (prepare -> launch -> keepalive -> finish); ``gang/`` forms
and joins multi-node gangs; ``advisories.py`` fails submissions JetStream gave up
on; ``reporting.py`` publishes job events. Each part is handed what it uses; none
of them imports this module. Nothing here lets one bad job take the agent down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg

from trl_nats.messages import BadMessage, CancelRequest, decode
from trl_nats.publishing import EventPublisher
from trl_nats.settings import NatsSettings, connect
from trl_nats.store import JobStore
from trl_nats.topology import ensure_topology_retrying
from trl_nats_agent.advisories import QUEUE_GROUP, MaxDeliveriesWatcher
from trl_nats_agent.attempt import Attempts
from trl_nats_agent.checkpoints import CheckpointStore
from trl_nats_agent.claims import Claims
from trl_nats_agent.gang.gangs import Gangs
from trl_nats_agent.job import RunningJob
from trl_nats_agent.metrics import AgentMetrics
from trl_nats_agent.network import advertise_addr_for, interface_of
from trl_nats_agent.node import Node
from trl_nats_agent.policy import AgentPolicy
from trl_nats_agent.reporting import JobEvents
from trl_nats_agent.settings import AgentSettings
from trl_nats_agent.workspace import Workspace

log = logging.getLogger("trl_nats_agent")


class Agent:
    def __init__(self, settings: NatsSettings, config: AgentSettings) -> None:
        self.settings = settings
        self.cfg = config
        self.id = config.agent_id
        self.running: dict[str, RunningJob] = {}
        self.node = Node(config, agent_ttl_s=settings.agent_ttl_s, running=lambda: list(self.running))
        self.policy = AgentPolicy(
            output_root=config.outputs, model_roots=list(config.model_roots), allow_remote_code=config.allow_remote_code
        )
        self.workspace = Workspace(config, self.policy)
        self.metrics = AgentMetrics(
            len(config.gpus),
            gpus_busy=lambda: len(self.node.gpus) - len(self.node.free),
            jobs_running=lambda: len(self.running),
        )
        self._stopping = asyncio.Event()
        self.attempts: Attempts | None = None

    @property
    def claims(self) -> int:
        """Jobs claimed so far (as leader, for multi-node ones)."""
        return self.metrics.claim_count

    async def run(self) -> None:
        nc = await self._connect()
        if nc is None:
            return
        js = nc.jetstream(timeout=self.settings.request_timeout)
        node = self.node
        if not node.addr:
            try:
                node.addr = advertise_addr_for(nc.connected_url.geturl())
            except OSError as exc:  # only multi-node jobs need it: run single-node work regardless
                log.warning("cannot tell this node's address (%s); multi-node jobs will use 127.0.0.1", exc)
                node.addr = "127.0.0.1"
        node.ifname = interface_of(node.addr)
        if self.cfg.metrics_port is not None:
            self.metrics.serve(self.cfg.metrics_port, self.cfg.metrics_host)
        # a cluster that is still electing its JetStream leader answers with timeouts: ride it out, don't die
        topo = await ensure_topology_retrying(js, self.settings)
        node.agents_kv = topo.agents
        store = JobStore(topo.jobs)
        publisher = EventPublisher(js).start()
        events = JobEvents(publisher, self.settings.names)
        checkpoints = CheckpointStore(
            self.cfg.checkpoint_store, artifacts=topo.artifacts, max_bytes=self.cfg.checkpoint_max_bytes
        )
        attempts = self.attempts = Attempts(
            node, self.settings, store, self.workspace, events, checkpoints, self.metrics,
            datasets=topo.datasets, running=self.running,
        )  # fmt: skip
        claims = Claims(
            node, self.settings, js, store, self.policy, self.workspace, events, self.metrics,
            stopping=self._stopping, running=self.running, start=self._start, lead_gang=lambda *a: gangs.lead(*a),
        )  # fmt: skip
        gangs = attempts.gangs = Gangs(
            topo.gangs, node, store, self.policy, self.metrics,
            stopping=self._stopping, check_claimable=claims.check_claimable, new_job=self._register,
            forget_job=lambda job_id: self.running.pop(job_id, None), run_job=attempts.run, train=attempts.train,
            emit_log=events.emit_log, keepalive_s=attempts.keepalive_s,
        )  # fmt: skip
        advisories = MaxDeliveriesWatcher(
            js,
            store,
            self.settings.names,
            owner_alive=node.owner_alive,
            sink=publisher.put,
            agent_id=self.id,
        )
        subs = [
            await nc.subscribe(self.settings.names.control(self.id), cb=self._on_control),
            await nc.subscribe(self.settings.names.jobs_max_deliveries, queue=QUEUE_GROUP, cb=advisories.on_advisory),
        ]
        log.info(
            "agent %s on %s (%s): %d %s slot(s), pools %s",
            self.id, self.cfg.node, node.addr, len(self.cfg.gpus), self.cfg.device, node.pools,
        )  # fmt: skip
        await node.beat()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(node.beat_forever(self._stopping))
                sweeper = tg.create_task(advisories.sweep_forever(self._stopping))
                fetchers = [tg.create_task(claims.fetch_loop(r.pool, r.gpus_per_node)) for r in node.shapes]
                fetchers += [tg.create_task(claims.fetch_loop(q, n, max_deliver=-1)) for q, n in gangs.queues]
                tg.create_task(gangs.run())
                await self._stopping.wait()
                for f in [*fetchers, sweeper]:
                    f.cancel()
                await self._drain()
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await publisher.close()
            await node.forget()
            await nc.close()
            self.metrics.close()
            self.workspace.close()

    async def _connect(self):
        """The NATS connection; a node agent outlives broker outages, its first connect included."""
        while True:
            try:
                return await connect(self.settings, name=f"trl-nats-agent {self.id}")
            except ConnectionError as exc:
                log.warning("%s; retrying in 2s", exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), 2.0)
                    return None
                except TimeoutError:
                    continue

    def stop(self) -> None:
        """Stop claiming; running jobs finish within the drain timeout or are handed back."""
        self._stopping.set()
        self.node.capacity_changed.set()

    def _register(self, spec, attempt, msg, gpus, gang=None, *, run: int = 0) -> RunningJob:
        job = self.workspace.new_job(spec, attempt, msg, gpus, gang, run=run)
        self.running[spec.job_id] = job
        return job

    def _start(self, job: RunningJob) -> None:
        job.task = asyncio.create_task(self.attempts.run(job), name=f"job-{job.spec.job_id}")

    async def _drain(self) -> None:
        if not self.running:
            return
        log.info("stopping: %d running job(s), waiting up to %.0fs", len(self.running), self.cfg.drain_timeout_s)
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks and self.cfg.drain_timeout_s > 0:
            await asyncio.wait(tasks, timeout=self.cfg.drain_timeout_s)
        for job in list(self.running.values()):
            await self.attempts.hand_back(job)
        tasks = [r.task for r in self.running.values() if r.task]
        if tasks:
            await asyncio.wait(tasks, timeout=60)

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
        await self.attempts.cancel(job, req.reason)
