"""A multi-node gang on the 3-node cluster when its leader's agent is SIGKILLed mid-run.

Three real agents (one slot each, no-op trainer under real torchrun rendezvous); a 2-node job
runs on two of them. The leader's agent is SIGKILLed: the member notices the leader's heartbeat
is gone and stops its ranks (no process of that attempt is left), and the job is retried as one
gang on the two live agents, where it completes.
"""

from __future__ import annotations

import signal

import pytest
from support import NOOP, ROWS, agents_up, processes_matching
from support.cluster import cluster_settings, local_cluster, wait_for

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, MetricsEvent, Resources, StatusEvent

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
