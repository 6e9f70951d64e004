"""Cluster soak: 200 short jobs through 3 agents on a 3-node R3 cluster, while every broker node is
restarted in turn (a rolling restart) and one agent is SIGKILLed mid-job.

Two agents complete jobs in-process (``inline:noop``: claim, keepalive, records and events are
real, the training is a sleep); the third runs each job's no-op trainer under real torchrun, so
the agent killed mid-run leaves real processes that must die with it. Afterwards: 200 completed,
0 lost, 0 run to completion twice, 0 gaps in any claim's events, no event stored twice, the
work queue empty (the checks: ``support/soak.py``).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from support.cluster import cluster_settings, local_cluster
from support.soak import (
    JOBS,
    check_end,
    kill_mid_job,
    no_orphans,
    start_soak_agents,
    submit_jobs,
    terminal,
    wait_terminal,
)

from trl_nats.client import Client

pytestmark = pytest.mark.integration


@pytest.fixture
def nats_cluster(tmp_path):
    yield from local_cluster(tmp_path)


@pytest.fixture
def settings(nats_cluster):
    # the default ack wait (30 s): it must outlast an election plus a keepalive interval, or a job that
    # a live agent is finishing (its final write riding out an election) is redelivered and run again
    return cluster_settings(nats_cluster)


async def test_cluster_soak_200_jobs_rolling_restart_and_a_killed_agent(settings, nats_cluster, start_agent):
    real = start_soak_agents(start_agent)
    client = await Client.connect(settings)
    started = time.monotonic()
    try:
        await submit_jobs(client)
        await kill_mid_job(client, real)

        # a rolling restart of the whole cluster, one node at a time, while the other agents work
        restarted = []
        for node in nats_cluster.nodes:
            await asyncio.to_thread(nats_cluster.restart, node.name)
            restarted.append((node.name, await terminal(client)))
        await no_orphans(real)
        await wait_terminal(client, JOBS, "every job to end")

        end = await check_end(client)
        assert all(done < JOBS for _, done in restarted), f"the restarts came after the work: {restarted}"
        print(
            f"\ncluster soak: {JOBS} jobs completed in {time.monotonic() - started:.0f}s; by agent "
            f"{dict(end.by_agent)}; claimed again after the kill: {end.retried}; terminal jobs when each node "
            f"came back: {restarted}"
        )
    finally:
        await client.close()
