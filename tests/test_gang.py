"""Multi-node gang scheduling through real agents, a real nats-server and real torchrun rendezvous.

The agents run on loopback here (separate processes, separate state dirs); the same
protocol across network namespaces, with real DPO training, is in test_multinode_dpo.py.
The no-op trainer keeps these about scheduling: who reserves what, when, and for how long.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support import NOOP, ROWS, agents_up, wait_for

from trl_nats.client import Client
from trl_nats.messages import (
    GangMember,
    GangRecord,
    JobRecord,
    JobSpec,
    JobState,
    LogEvent,
    MetricsEvent,
    Resources,
    StatusEvent,
    decode,
    encode,
)

pytestmark = pytest.mark.integration

GANG_TIMEOUT = 8.0


async def _gang_job(
    client: Client, job_id: str, nodes: int = 2, max_attempts: int = 3, check_fleet: bool = True, **labels: str
):
    spec = JobSpec(
        job_id=job_id,
        model="unused",
        dataset=await client.upload_dataset(ROWS),
        resources=Resources(nodes=nodes, gpus_per_node=1),
        max_attempts=max_attempts,
        labels={f"noop.{k}": v for k, v in labels.items()},
    )
    return await client.submit(spec, check_fleet=check_fleet)


class GangLog:
    """Every change of the gangs bucket, as the test saw it: (monotonic time, key, record or None)."""

    def __init__(self) -> None:
        self.changes: list[tuple[float, str, GangRecord | None]] = []
        self._task: asyncio.Task | None = None

    async def start(self, client: Client) -> GangLog:
        watcher = await client.topo.gangs.watchall()

        async def follow() -> None:
            async for entry in watcher:
                if entry is None:
                    continue
                rec = decode(entry.value, GangRecord) if entry.value else None
                self.changes.append((time.monotonic(), entry.key, rec))

        self._task = asyncio.create_task(follow())
        self._watcher = watcher
        return self

    async def stop(self) -> None:
        await self._watcher.stop()
        if self._task:
            self._task.cancel()

    def reservations(self) -> list[tuple[str, str, float]]:
        """(job, agent, seconds) an agent sat in a forming gang before it ran, was aborted or went away."""
        spans = []
        open_since: dict[tuple[str, str], float] = {}
        for t, key, rec in self.changes:
            members = {m.agent for m in rec.members} if rec and rec.state.value == "forming" else set()
            for (job, agent), since in list(open_since.items()):
                if job == key and agent not in members:
                    spans.append((job, agent, t - since))
                    del open_since[(job, agent)]
            for agent in members:
                open_since.setdefault((key, agent), t)
        return spans


async def test_two_gangs_competing_for_two_agents_run_one_after_the_other(settings, start_agent):
    for name in ("node-a", "node-b"):
        start_agent(name, slots=1, recipe=NOOP, extra=["--gang-timeout", str(GANG_TIMEOUT)])
    client = await Client.connect(settings)
    gangs = await GangLog().start(client)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        first = await _gang_job(client, "gang-first", steps="8", step_s="0.25")
        second = await _gang_job(client, "gang-second", steps="8", step_s="0.25")
        records = [await first.wait(timeout=600), await second.wait(timeout=600)]
        for r in records:
            assert r.state is JobState.completed, r.error
            assert r.attempt == 1, f"{r.job_id} needed {r.attempt} attempts"
            assert sorted(a.agent for a in r.allocation) == ["node-a", "node-b"], r.allocation
        # one after the other: the agents each host one node, so the runs cannot overlap
        a, b = sorted(records, key=lambda r: r.started_at)
        assert a.finished_at <= b.started_at, "the two gangs ran at the same time on one-slot agents"
        for job in (first, second):
            events = [e async for e in job.events()]
            claims = [e for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress]
            assert len(claims) == 1 and "gang of 2 nodes" in claims[0].message, claims
            steps = sorted({e.step for e in events if isinstance(e, MetricsEvent)})
            assert steps == list(range(1, 9))
        await asyncio.sleep(0.5)
        spans = gangs.reservations()
        assert spans, "the test saw no gang forming"
        longest = max(s for _, _, s in spans)
        # an agent waits in a forming gang at most the timeout (members give up 5 s after it)
        assert longest <= GANG_TIMEOUT + 6, f"an agent sat reserved for {longest:.1f}s: {spans}"
        assert (await client.list_gangs()) == [], "finished gangs must leave nothing behind"
        for agent in await client.list_agents():
            assert agent.running_jobs == [] and len(agent.free_gpus) == 1
    finally:
        await gangs.stop()
        await client.close()


async def test_a_node_that_fails_stops_the_whole_gang_and_the_job_is_retried_as_one(settings, start_agent):
    for name in ("node-a", "node-b"):
        start_agent(name, slots=1, recipe=NOOP, extra=["--gang-timeout", str(GANG_TIMEOUT)])
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        # rank 1 (node 1) dies at once on attempt 1; rank 0 would go on for 400 steps on its own
        job = await _gang_job(
            client, "gang-flaky", max_attempts=2, steps="400", step_s="0.1", fail="first", fail_rank="1"
        )
        # attempt 2 runs both nodes to the end: cancel it rather than wait 40 s, it has proven its point
        await wait_for(lambda: _running(job, attempt=2), "attempt 2 to start on both nodes", timeout=600)
        await job.cancel()
        record = await job.wait(timeout=300)
        assert record.state is JobState.cancelled and record.attempt == 2
        events = [e async for e in job.events()]
        states = [(e.state, e.attempt) for e in events if isinstance(e, StatusEvent)]
        assert states[:4] == [
            (JobState.scheduled, 0),
            (JobState.in_progress, 1),
            (JobState.scheduled, 1),
            (JobState.in_progress, 2),
        ], states
        retry = next(
            e for e in events if isinstance(e, StatusEvent) and e.state is JobState.scheduled and e.attempt == 1
        )
        assert "node 1 (node-b) failed" in retry.message or "node 1 (node-a) failed" in retry.message, retry.message
        first_steps = [e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 1]
        assert not first_steps or max(first_steps) < 400, "node 0 ran on alone after node 1 died"
        await wait_for(lambda: _all_idle(client), "both agents to be idle again", timeout=120)
        assert (await client.list_gangs()) == []
    finally:
        await client.close()


async def test_a_gang_that_cannot_form_releases_its_leader_and_waits(settings, start_agent):
    start_agent("lonely", slots=1, recipe=NOOP, extra=["--gang-timeout", "3"])
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 1), "the agent to heartbeat")
        # two nodes wanted, one agent up (as when the fleet shrank after the job was queued)
        job = await _gang_job(client, "gang-waits", check_fleet=False, steps="3")
        assert (await job.status()).state is JobState.scheduled
        gangs = await GangLog().start(client)
        try:
            await wait_for(lambda: _formed_then_gone(gangs, "gang-waits"), "a formation to time out", timeout=120)
        finally:
            await gangs.stop()
        # while no gang forms, the agent holds nothing and runs single-node work
        single = await client.submit(
            JobSpec(
                job_id="single", model="unused", dataset=await client.upload_dataset(ROWS), labels={"noop.steps": "2"}
            )
        )
        assert (await single.wait(timeout=300)).state is JobState.completed
        record = await job.status()
        assert record.state is JobState.scheduled and record.attempt == 0, "a failed formation is not an attempt"
        start_agent("second", slots=1, recipe=NOOP, extra=["--gang-timeout", "3"])
        record = await job.wait(timeout=600)
        assert record.state is JobState.completed and record.attempt == 1
    finally:
        await client.close()


async def _formed_then_gone(gangs: GangLog, job_id: str) -> bool:
    seen = [rec for _, key, rec in gangs.changes if key == job_id]
    return any(r is not None for r in seen) and seen[-1] is None


async def _running(job, attempt: int) -> bool:
    rec = await job.status()
    return rec.state is JobState.in_progress and rec.attempt == attempt and rec.step > 0


async def _all_idle(client: Client) -> bool:
    agents = await client.list_agents()
    return all(not a.running_jobs and len(a.free_gpus) == len(a.gpus) for a in agents)


async def test_gangs_whose_leaders_died_hold_no_agent_past_their_timeout_and_younger_gangs_wait_for_them(
    settings, start_agent
):
    for name in ("node-a", "node-b"):
        start_agent(name, slots=1, recipe=NOOP, extra=["--gang-timeout", str(GANG_TIMEOUT)])
    client = await Client.connect(settings)
    gangs = await GangLog().start(client)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        # two older jobs' gangs, forming, whose leaders died right after writing them: nobody will
        # ever abort them. The agents can join the first (it can never fill: 4 nodes); the second
        # wants H100s, so they cannot join it, and it stays "forming" longer.
        joinable = _ghost("ghost-joinable", "n1g1any", timeout_s=4.0, age_s=200)
        unjoinable = _ghost("ghost-h100", "n1g1h100", timeout_s=10.0, age_s=100)
        ds = await client.upload_dataset(ROWS)
        for ghost, gpu_type in ((joinable, None), (unjoinable, "H100")):
            # the job's record exists (agents read it before joining); its message is with the dead leader
            spec = JobSpec(
                job_id=ghost.job_id, model="unused", dataset=ds, resources=Resources(nodes=4, gpu_type=gpu_type)
            )
            await client.store.create(JobRecord(job_id=ghost.job_id, spec=spec, submitted_at=ghost.submitted_at))
            await client.topo.gangs.create(ghost.job_id, encode(ghost))
        job = await _gang_job(client, "young", steps="3")
        record = await job.wait(timeout=600)
        assert record.state is JobState.completed and record.attempt == 1, record.error
        await asyncio.sleep(0.5)
        held = [(a, s) for j, a, s in gangs.reservations() if j == "ghost-joinable" and a != "ghost"]
        assert {a for a, _ in held} == {"node-a", "node-b"}, "the agents never joined the older gang"
        # members leave a gang that never starts after its timeout plus 5 s, on their own clocks
        assert max(s for _, s in held) <= joinable.timeout_s + 5 + 3, held
        # the young job's leader yielded to the older gang still forming, however unfillable
        lines = [e.line for e in [e async for e in job.events()] if isinstance(e, LogEvent)]
        assert any("yielded to the older gang of ghost-h100" in line for line in lines), lines
        # and it ran only once that gang's time was up
        assert record.started_at >= unjoinable.created_at + unjoinable.timeout_s
    finally:
        await gangs.stop()
        await client.close()


def _ghost(job_id: str, node_pool: str, timeout_s: float, age_s: float) -> GangRecord:
    return GangRecord(
        job_id=job_id,
        leader="ghost",
        nodes=4,
        gpus_per_node=1,
        node_pool=node_pool,
        submitted_at=time.time() - age_s,
        rdzv_endpoint="127.0.0.1:9",
        timeout_s=timeout_s,
        members=[GangMember(agent="ghost", node="ghost", addr="127.0.0.1", gpus=[0], node_rank=0)],
    )
