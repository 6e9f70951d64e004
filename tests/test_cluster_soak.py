"""Cluster soak: 200 short jobs through 3 agents on a 3-node R3 cluster, while every broker node is
restarted in turn (a rolling restart) and one agent is SIGKILLed mid-job.

Two agents complete jobs in-process (``inline:noop``: claim, keepalive, records and events are
real, the training is a sleep); the third runs each job's no-op trainer under real torchrun, so
the agent killed mid-run leaves real processes that must die with it. Afterwards: 200 completed,
0 lost, 0 run to completion twice, 0 gaps in any claim's events, no event stored twice, the
work queue empty.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time

import pytest
from support import NOOP, processes_matching
from support.cluster import all_events, cluster_settings, duplicated_ids, history_problems, local_cluster, retrying

from trl_nats.client import Client
from trl_nats.messages import CheckpointEvent, JobSpec, JobState, StatusEvent

pytestmark = pytest.mark.integration

JOBS = 200
ROWS = [{"prompt": "p", "chosen": "good", "rejected": "bad"}]
GUARD_S = 900.0


@pytest.fixture
def nats_cluster(tmp_path):
    yield from local_cluster(tmp_path)


@pytest.fixture
def settings(nats_cluster):
    # the default ack wait (30 s): it must outlast an election plus a keepalive interval, or a job that
    # a live agent is finishing (its final write riding out an election) is redelivered and run again
    return cluster_settings(nats_cluster)


async def _terminal(client: Client) -> int:
    try:
        return sum(1 for r in await client.list_jobs() if r.state.terminal)
    except Exception:  # a node is restarting
        return 0


async def _wait_terminal(client: Client, n: int, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while await _terminal(client) < n:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def test_cluster_soak_200_jobs_rolling_restart_and_a_killed_agent(settings, nats_cluster, start_agent):
    start_agent("inline-1", slots=2, recipe="inline:noop")
    start_agent("inline-2", slots=2, recipe="inline:noop")
    real = start_agent("torchrun-1", slots=2, recipe=NOOP)
    client = await Client.connect(settings)
    started = time.monotonic()
    try:
        ref = await client.upload_dataset(ROWS)
        labels = {"noop.steps": "6", "noop.step_s": "0.1"}
        for i in range(JOBS):
            await client.submit(JobSpec(job_id=f"soak-{i:03d}", model="unused", dataset=ref, labels=labels))

        # kill the torchrun agent while it trains, once it has finished a couple of jobs
        deadline = time.monotonic() + GUARD_S
        while True:
            assert time.monotonic() < deadline, "the torchrun agent never ran a job"
            done_by_real = [
                r
                for r in await retrying(client.list_jobs, "listing jobs")
                if r.state.terminal and r.allocation and r.allocation[0].agent == "torchrun-1"
            ]
            training = any("torch.distributed.run" in _cmdline(p) for p in processes_matching(str(real.state_dir)))
            if len(done_by_real) >= 2 and training:
                break
            await asyncio.sleep(0.1)
        real.stop(signal.SIGKILL)

        # a rolling restart of the whole cluster, one node at a time, while the other agents work
        restarted = []
        for node in nats_cluster.nodes:
            await asyncio.to_thread(nats_cluster.restart, node.name)
            restarted.append((node.name, await _terminal(client)))
        deadline = time.monotonic() + 30
        while processes_matching(str(real.state_dir)):
            assert time.monotonic() < deadline, (
                f"orphans of the killed agent: {processes_matching(str(real.state_dir))}"
            )
            await asyncio.sleep(0.2)
        await _wait_terminal(client, JOBS, "every job to end")

        records = await retrying(client.list_jobs, "listing jobs")
        states = collections.Counter(r.state for r in records)
        assert len(records) == JOBS, f"lost jobs: {JOBS - len(records)}"
        assert states == {JobState.completed: JOBS}, states
        assert all(done < JOBS for _, done in restarted), f"the restarts came after the work: {restarted}"

        events = await all_events(client)
        assert duplicated_ids(events) == [], "an event was stored twice"
        plain = [e for _, e in events]
        completed = collections.Counter(
            e.job_id for e in plain if isinstance(e, StatusEvent) and e.state is JobState.completed
        )
        finals = collections.Counter(e.job_id for e in plain if isinstance(e, CheckpointEvent) and e.checkpoint.final)
        claims = collections.Counter(
            e.job_id for e in plain if isinstance(e, StatusEvent) and e.state is JobState.in_progress
        )
        assert set(completed) == {r.job_id for r in records} and max(completed.values()) == 1
        assert not finals or max(finals.values()) == 1, "a job's training ran to completion twice"
        gaps = [p for r in records for p in history_problems(r, events, None)]
        assert gaps == [], gaps
        info = await retrying(lambda: client.js.stream_info(client.names.jobs_stream), "jobs stream info")
        assert info.state.messages == 0, "the work queue is not empty"
        retried = {
            j: [(e.attempt, e.agent, e.state.value) for e in plain if isinstance(e, StatusEvent) and e.job_id == j]
            for j, n in claims.items()
            if n > 1
        }
        by_agent = collections.Counter(r.allocation[0].agent for r in records)
        print(
            f"\ncluster soak: {JOBS} jobs completed in {time.monotonic() - started:.0f}s; by agent {dict(by_agent)}; "
            f"claimed again after the kill: {retried}; terminal jobs when each node came back: {restarted}"
        )
        assert retried, "the killed agent's job was taken over"
        for job_id, history in retried.items():  # claimed again: its owner was killed, or it ended its attempt first
            runs = [(a, agent) for a, agent, state in history if state == "in_progress"]
            for attempt, agent in runs[:-1]:
                ended = any(a == attempt and s in ("scheduled", "failed") for a, _, s in history)
                assert agent == "torchrun-1" or ended, f"{job_id} was claimed again while {agent} ran it: {history}"
    finally:
        await client.close()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
