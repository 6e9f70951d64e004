"""The soak scenario both soaks share: 200 short jobs through 3 agents (two in-process, one under real
torchrun), the torchrun agent SIGKILLed mid-job, the broker disturbed on the way (each test its own way),
and one set of end checks read from the job records and the whole events stream."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from dataclasses import dataclass

from support.cluster import all_events, duplicated_ids, history_problems, retrying
from support.data import preference_rows
from support.processes import NOOP, AgentProcess, cmdline, processes_matching
from trl_nats.client import Client
from trl_nats.messages import CheckpointEvent, JobRecord, JobSpec, JobState, StatusEvent

JOBS = 200
GUARD_S = 900.0  # a hang guard only
KILLED = "torchrun-1"


def start_soak_agents(start_agent) -> AgentProcess:
    """Two agents that finish jobs in-process and one that runs each job under real torchrun (returned)."""
    start_agent("inline-1", slots=2, recipe="inline:noop")
    start_agent("inline-2", slots=2, recipe="inline:noop")
    return start_agent(KILLED, slots=2, recipe=NOOP)


async def submit_jobs(client: Client, n: int = JOBS) -> None:
    ref = await client.upload_dataset(preference_rows(1))
    labels = {"noop.steps": "6", "noop.step_s": "0.1"}
    for i in range(n):
        await client.submit(JobSpec(job_id=f"soak-{i:03d}", model="unused", dataset=ref, labels=labels))


async def kill_mid_job(client: Client, agent: AgentProcess) -> None:
    """SIGKILL ``agent`` while torchrun trains for it, once it has finished two jobs."""
    deadline = time.monotonic() + GUARD_S
    while True:
        assert time.monotonic() < deadline, "the torchrun agent never ran a job"
        done = [
            r
            for r in await retrying(client.list_jobs, "listing jobs")
            if r.state.terminal and r.allocation and r.allocation[0].agent == KILLED
        ]
        training = any("torch.distributed.run" in cmdline(p) for p in processes_matching(str(agent.state_dir)))
        if len(done) >= 2 and training:
            break
        await asyncio.sleep(0.1)
    agent.stop(signal.SIGKILL)


async def no_orphans(agent: AgentProcess) -> None:
    """Every process the killed agent started dies with it."""
    deadline = time.monotonic() + 30
    while left := processes_matching(str(agent.state_dir)):
        assert time.monotonic() < deadline, f"orphans of the killed agent: {left}"
        await asyncio.sleep(0.2)


async def terminal(client: Client) -> int:
    try:
        return sum(1 for r in await client.list_jobs() if r.state.terminal)
    except Exception:  # a broker is restarting
        return 0


async def wait_terminal(client: Client, n: int, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while await terminal(client) < n:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


@dataclass
class SoakEnd:
    records: list[JobRecord]
    by_agent: collections.Counter
    finals: collections.Counter
    retried: dict[str, list[tuple[int, str, str]]]  # job -> (attempt, agent, state) of its status events


async def check_end(client: Client, n: int = JOBS) -> SoakEnd:
    """Every job completed once, none lost, none trained to completion twice, no event stored twice, no
    gap in any claim's events, the work queue empty, the killed agent's job taken over, and a job claimed
    again only when its owner was the killed agent or its attempt had ended."""
    records = await retrying(client.list_jobs, "listing jobs")
    states = collections.Counter(r.state for r in records)
    assert len(records) == n, f"lost jobs: {n - len(records)}"
    assert states == {JobState.completed: n}, states

    events = await all_events(client)
    assert duplicated_ids(events) == [], "an event was stored twice"
    plain = [e for _, e in events]
    statuses = [e for e in plain if isinstance(e, StatusEvent)]
    completed = collections.Counter(e.job_id for e in statuses if e.state is JobState.completed)
    finals = collections.Counter(e.job_id for e in plain if isinstance(e, CheckpointEvent) and e.checkpoint.final)
    claims = collections.Counter(e.job_id for e in statuses if e.state is JobState.in_progress)
    assert set(completed) == {r.job_id for r in records} and max(completed.values()) == 1
    assert not finals or max(finals.values()) == 1, "a job's training ran to completion twice"
    gaps = [p for r in records for p in history_problems(r, events, None)]
    assert gaps == [], gaps
    info = await retrying(lambda: client.js.stream_info(client.names.jobs_stream), "jobs stream info")
    assert info.state.messages == 0, "the work queue is not empty"

    retried = {
        j: [(e.attempt, e.agent, e.state.value) for e in statuses if e.job_id == j] for j, c in claims.items() if c > 1
    }
    assert retried, "the killed agent's job was taken over"
    for job_id, history in retried.items():
        runs = [(a, agent) for a, agent, state in history if state == "in_progress"]
        for attempt, agent in runs[:-1]:
            ended = any(a == attempt and s in ("scheduled", "failed") for a, _, s in history)
            assert agent == KILLED or ended, f"{job_id} was claimed again while {agent} ran it: {history}"
    by_agent = collections.Counter(r.allocation[0].agent for r in records)
    # every job the torchrun agent completed trained to its end under torchrun, and nothing else did
    assert by_agent[KILLED] >= 2 and sum(finals.values()) == by_agent[KILLED], (by_agent, finals)
    return SoakEnd(records, by_agent, finals, retried)
