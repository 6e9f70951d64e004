"""Soak: 200 short jobs through 3 agents, one agent SIGKILLed and the broker SIGKILLed and restarted on the way.

Two agents complete jobs in-process (``inline:noop``: the claim, keepalive and
bookkeeping are real, the training is a sleep) so the soak stays a few
minutes on two cores; the third runs each job's no-op trainer under real
torchrun, so the agent killed mid-run leaves real processes that must die
with it. Afterwards: 200 completed, 0 lost, and no job ran to completion
twice, read from the whole events stream (the checks: ``support/soak.py``).
"""

from __future__ import annotations

import time

import pytest
from support.soak import JOBS, check_end, kill_mid_job, no_orphans, start_soak_agents, submit_jobs, wait_terminal

from trl_nats.client import Client
from trl_nats.settings import NatsSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(nats_server) -> NatsSettings:
    return NatsSettings(servers=[nats_server.url], agent_ttl_s=5.0, ack_wait_s=10.0)


async def test_soak_200_jobs_3_agents_one_killed_one_broker_restart(settings, start_agent, nats_server):
    real = start_soak_agents(start_agent)
    client = await Client.connect(settings)
    started = time.monotonic()
    try:
        await submit_jobs(client)
        await kill_mid_job(client, real)
        await no_orphans(real)

        await wait_terminal(client, JOBS // 2, "half the jobs")
        nats_server.restart(kill=True)
        await wait_terminal(client, JOBS, "every job to end")

        end = await check_end(client)
        print(
            f"\nsoak: {JOBS} jobs completed in {time.monotonic() - started:.0f}s; by agent {dict(end.by_agent)}; "
            f"claimed again after the kill: {sorted(end.retried)}; trainings run to completion under torchrun: "
            f"{len(end.finals)}"
        )
    finally:
        await client.close()
