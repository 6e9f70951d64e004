"""A multi-node gang on the 3-node cluster when its leader's agent is SIGKILLed mid-run.

Three real agents (one slot each, no-op trainer under real torchrun rendezvous); a 2-node job
runs on two of them. The leader's agent is SIGKILLed: the member notices the leader's heartbeat
is gone and stops its ranks (no process of that attempt is left), and the job is retried as one
gang on the two live agents, where it completes.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from support import NOOP, ROWS, agents_up, processes_matching
from support.cluster import cluster_settings, local_cluster, wait_for

from trl_nats.client import Client
from trl_nats.messages import GangRecord, GangState, JobSpec, JobState, MetricsEvent, Resources, StatusEvent, decode

pytestmark = pytest.mark.integration

STEPS = 60


@pytest.fixture
def nats_cluster(tmp_path):
    yield from local_cluster(tmp_path)


@pytest.fixture
def settings(nats_cluster):
    return cluster_settings(nats_cluster)


async def test_gang_leader_sigkilled_mid_run_stops_every_node_and_the_job_is_retried_as_one(settings, start_agent):
    agents = {n: start_agent(n, slots=1, recipe=NOOP, extra=["--gang-timeout", "8"]) for n in ("g-a", "g-b", "g-c")}
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 3), "three agents to heartbeat")
        spec = JobSpec(
            job_id="gang-leader-lost",
            model="unused",
            dataset=await client.upload_dataset(ROWS),
            resources=Resources(nodes=2, gpus_per_node=1),
            max_attempts=3,
            labels={"noop.steps": str(STEPS), "noop.step_s": "0.1"},
        )
        job = await client.submit(spec)

        async def running():
            r = await job.status()
            return r if r.state is JobState.in_progress and r.step >= 5 and len(r.allocation) == 2 else None

        before = await wait_for(running, "the gang to train")
        leader = before.owner
        member = next(a.agent for a in before.allocation if a.agent != leader)
        member_attempt_1 = str(agents[member].state_dir / "jobs" / spec.job_id / "attempt-1")
        assert processes_matching(member_attempt_1), "the member's ranks are not visible to this check"
        agents[leader].stop(signal.SIGKILL)

        async def member_stopped():
            return not processes_matching(member_attempt_1)

        await wait_for(member_stopped, "the member's ranks of attempt 1 to stop", guard=120)
        record = await job.wait(timeout=600)
        assert record.state is JobState.completed, record.error
        assert record.attempt == 2 and len(record.allocation) == 2
        assert leader not in {a.agent for a in record.allocation}
        events = [e async for e in job.events()]
        claims = [e.attempt for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress]
        assert claims == [1, 2], claims
        first = [e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 1]
        assert not first or max(first) < STEPS, "attempt 1 ran on after its leader died"
        second = sorted(e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 2)
        assert second and second[-1] == STEPS
    finally:
        await client.close()


async def test_a_member_frozen_while_forming_does_not_hold_the_gang_past_its_timeout(settings, start_agent):
    """A 3-node job on two agents: the second joins the forming gang and is frozen (SIGSTOP) at once. The
    leader gives up on its own clock (the gang timeout) while the member is still frozen, and the job goes
    back to the queue as a wait, not a failed attempt; thawed, the member leaves and holds nothing."""
    leader = start_agent("f-a", slots=1, recipe=NOOP, extra=["--gang-timeout", "6"])
    member = start_agent("f-b", slots=1, recipe=NOOP, extra=["--gang-timeout", "6"])
    client = await Client.connect(settings)
    watcher = await client.topo.gangs.watchall()
    seen: list[tuple[bool, GangRecord | None]] = []  # (member frozen at that moment, record)
    frozen = False
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")

        async def follow():
            nonlocal frozen
            async for entry in watcher:
                if entry is None or entry.key != "gang-frozen":
                    continue
                rec = decode(entry.value, GangRecord) if entry.value else None
                if rec and rec.state is GangState.forming and "f-b" in {m.agent for m in rec.members} and not frozen:
                    member.proc.send_signal(signal.SIGSTOP)
                    frozen = True
                seen.append((frozen, rec))

        follower = asyncio.create_task(follow())
        spec = JobSpec(
            job_id="gang-frozen",
            model="unused",
            dataset=await client.upload_dataset(ROWS),
            resources=Resources(nodes=3, gpus_per_node=1),
            labels={"noop.steps": "5", "noop.step_s": "0.1"},
        )
        job = await client.submit(spec, check_fleet=False)  # three nodes, two agents: it can only form and wait

        async def given_up():
            return next(
                (rec for was_frozen, rec in seen if was_frozen and rec and rec.state is GangState.aborted), None
            )

        aborted = await wait_for(given_up, "the leader to give up on the gang with a frozen member", guard=120)
        assert frozen, "the member never joined"
        assert "timed out" in (aborted.reason or ""), aborted
        record = await job.status()
        assert record.state is JobState.scheduled and record.attempt == 0, "forming is a wait, not an attempt"
        member.proc.send_signal(signal.SIGCONT)
        frozen = False

        async def member_free():
            agents = {a.agent_id: a for a in await client.list_agents()}
            b = agents.get("f-b")
            return b is not None and not b.running_jobs and len(b.free_gpus) == len(b.gpus)

        await wait_for(member_free, "the thawed member to hold nothing", guard=120)
        follower.cancel()
        assert leader.proc.poll() is None and member.proc.poll() is None
        await job.cancel()
    finally:
        if frozen:
            member.proc.send_signal(signal.SIGCONT)
        await watcher.stop()
        await client.close()
