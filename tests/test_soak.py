"""Soak: 200 short jobs through 3 agents, one agent SIGKILLed and the broker SIGKILLed and restarted on the way.

Two agents complete jobs in-process (``inline:noop``: the claim, keepalive and
bookkeeping are real, the training is a sleep) so the soak stays a few
minutes on two cores; the third runs each job's no-op trainer under real
torchrun, so the agent killed mid-run leaves real processes that must die
with it. Afterwards: 200 completed, 0 lost, and no job ran to completion
twice, read from the whole events stream.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time

import pytest
from support import NOOP, preference_rows, processes_matching

from trl_nats.client import Client
from trl_nats.messages import BadMessage, CheckpointEvent, Event, JobSpec, JobState, StatusEvent, decode
from trl_nats.settings import NatsSettings

pytestmark = pytest.mark.integration

JOBS = 200
GUARD_S = 900.0


@pytest.fixture
def settings(nats_server) -> NatsSettings:
    return NatsSettings(servers=[nats_server.url], agent_ttl_s=5.0, ack_wait_s=10.0)


async def _retrying(call, guard: float = 120.0):
    deadline = time.monotonic() + guard
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _states(client: Client) -> collections.Counter:
    return collections.Counter(r.state for r in await client.list_jobs())


async def _wait_states(client: Client, done: int, what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        try:
            states = await _states(client)
            if sum(n for s, n in states.items() if s.terminal) >= done:
                return
        except Exception:  # the broker is restarting
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def _all_events(client: Client) -> list[Event]:
    sub = await client.js.subscribe(client.names.events_all, ordered_consumer=True)
    events: list[Event] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=3)
            except Exception:
                return events
            try:
                events.append(decode(msg.data, Event))
            except BadMessage:
                continue
    finally:
        await sub.unsubscribe()


async def test_soak_200_jobs_3_agents_one_killed_one_broker_restart(settings, start_agent, nats_server):
    start_agent("inline-1", slots=2, recipe="inline:noop")
    start_agent("inline-2", slots=2, recipe="inline:noop")
    real = start_agent("torchrun-1", slots=2, recipe=NOOP)
    client = await Client.connect(settings)
    started = time.monotonic()
    try:
        ref = await client.upload_dataset(preference_rows(1))
        for i in range(JOBS):
            await client.submit(
                JobSpec(
                    job_id=f"soak-{i:03d}",
                    model="unused",
                    dataset=ref,
                    labels={"noop.steps": "6", "noop.step_s": "0.1"},
                )
            )

        # kill the torchrun agent while it trains, once it has finished a few jobs
        deadline = time.monotonic() + GUARD_S
        while True:
            assert time.monotonic() < deadline, "the torchrun agent never ran a job"
            done_by_real = [
                r
                for r in await client.list_jobs()
                if r.state.terminal and r.allocation and r.allocation[0].agent == "torchrun-1"
            ]
            training = any("torch.distributed.run" in _cmdline(p) for p in processes_matching(str(real.state_dir)))
            if len(done_by_real) >= 2 and training:
                break
            await asyncio.sleep(0.1)
        real.stop(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while processes_matching(str(real.state_dir)):
            assert time.monotonic() < deadline, (
                f"orphans of the killed agent: {processes_matching(str(real.state_dir))}"
            )
            await asyncio.sleep(0.2)

        await _wait_states(client, JOBS // 2, "half the jobs")
        nats_server.restart(kill=True)
        await _wait_states(client, JOBS, "every job to end")

        records = await _retrying(client.list_jobs)
        states = collections.Counter(r.state for r in records)
        assert len(records) == JOBS, f"lost jobs: {JOBS - len(records)}"
        assert states == {JobState.completed: JOBS}, states

        events = await _retrying(lambda: _all_events(client))
        completed = collections.Counter(
            e.job_id for e in events if isinstance(e, StatusEvent) and e.state is JobState.completed
        )
        finals = collections.Counter(e.job_id for e in events if isinstance(e, CheckpointEvent) and e.checkpoint.final)
        claims = collections.Counter(
            e.job_id for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress
        )
        assert set(completed) == {r.job_id for r in records} and max(completed.values()) == 1
        assert not finals or max(finals.values()) == 1, "a job's training ran to completion twice"
        retried = sorted(j for j, n in claims.items() if n > 1)
        by_agent = collections.Counter(r.allocation[0].agent for r in records)
        info = await _retrying(lambda: client.js.stream_info(client.names.jobs_stream))
        assert info.state.messages == 0
        print(
            f"\nsoak: {JOBS} jobs completed in {time.monotonic() - started:.0f}s; by agent {dict(by_agent)}; "
            f"claimed again after the kill: {retried}; trainings run to completion under torchrun: {len(finals)}"
        )
        assert retried, "the killed agent's job was taken over"
        assert by_agent["torchrun-1"] >= 2 and len(finals) == by_agent["torchrun-1"]
    finally:
        await client.close()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
