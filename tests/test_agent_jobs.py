"""Jobs through real agents and a real nats-server, with the no-op trainer under real torchrun.

These prove the job machinery (claiming, events, cancel, poison messages,
several agents); the DPO recipe itself is proven in test_dpo_end_to_end.py.
"""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from support import NOOP, ROWS, agents_up, processes_matching, wait_for

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, MetricsEvent, Resources, StatusEvent, encode

pytestmark = pytest.mark.integration


async def _submit(client: Client, job_id: str, gpus: int = 1, **labels: str):
    ref = await client.upload_dataset(ROWS)
    spec = JobSpec(
        job_id=job_id,
        model="unused",
        dataset=ref,
        resources=Resources(gpus_per_node=gpus),
        labels={f"noop.{k}": v for k, v in labels.items()},
    )
    return await client.submit(spec)


async def test_events_are_plain_json_live_and_replayed_later(settings, start_agent):
    start_agent(recipe=NOOP)
    client = await Client.connect(settings)
    nc = await nats.connect(settings.servers)  # what `nats sub 'trl.events.j1.>'` sees
    live: list[dict] = []

    async def collect(msg) -> None:
        live.append(json.loads(msg.data))

    sub = await nc.subscribe("trl.events.j1.>", cb=collect)
    try:
        job = await _submit(client, "j1", steps="4")
        record = await job.wait(timeout=180)
        assert record.state is JobState.completed, record.error
        await asyncio.sleep(0.5)
        kinds = [e["type"] for e in live]
        assert kinds[0] == "status" and live[0]["state"] == "scheduled"
        assert kinds.count("metrics") == 4 and "checkpoint" in kinds
        assert live[-1]["type"] == "status" and live[-1]["state"] == "completed"
        assert [e["step"] for e in live if e["type"] == "metrics"] == [1, 2, 3, 4]

        # a subscriber that starts after the job finished replays its whole history
        replayed = [e async for e in client.job("j1").events(from_start=True)]
        assert [json.loads(encode(e)) for e in replayed] == live
    finally:
        await sub.unsubscribe()
        await nc.close()
        await client.close()


async def test_cancel_stops_torchrun_and_records_cancelled(settings, start_agent):
    agent = start_agent(recipe=NOOP)
    client = await Client.connect(settings)
    try:
        job = await _submit(client, "long-job", steps="100000", step_s="0.1")

        async def running_with_metrics():
            async for e in job.events(until_done=False):
                if isinstance(e, MetricsEvent):
                    return True
            return False

        await asyncio.wait_for(running_with_metrics(), 180)
        assert processes_matching("long-job"), "torchrun should be running for the job"
        await job.cancel()
        record = await job.wait(timeout=120)
        assert record.state is JobState.cancelled
        assert record.finished_at is not None
        await wait_for(lambda: _none_left("long-job"), "torchrun processes to exit", timeout=30)
        agents = await client.list_agents()
        assert agents[0].running_jobs == [] and len(agents[0].free_gpus) == 2
        assert agent.proc.poll() is None, "the agent keeps serving"
    finally:
        await client.close()


async def _none_left(needle: str) -> bool:
    return not processes_matching(needle)


async def test_malformed_submission_is_terminated_and_the_agent_goes_on(settings, start_agent):
    agent = start_agent(recipe=NOOP)
    client = await Client.connect(settings)
    try:
        subject = client.names.submit("n1g1any")
        await client.js.publish(subject, b"this is not json", headers={"Nats-Msg-Id": "garbage-1"})
        await client.js.publish(subject, b'{"job_id": "bad-1", "model": 5}', headers={"Nats-Msg-Id": "garbage-2"})
        job = await _submit(client, "good-1", steps="2")
        record = await job.wait(timeout=180)
        assert record.state is JobState.completed
        log = agent.log()
        assert "rejecting submission" in log and "not valid JSON" in log
        assert "Expected `str`, got `int` - at `$.model`" in log
        info = await client.js.consumer_info(client.names.jobs_stream, client.names.pool_consumer("n1g1any"))
        assert info.num_pending == 0 and info.num_ack_pending == 0, "poison messages must not be redelivered"
        assert agent.proc.poll() is None
    finally:
        await client.close()


async def test_two_agents_run_every_job_exactly_once_where_it_fits(settings, start_agent):
    start_agent("small", slots=1, recipe=NOOP)
    start_agent("big", slots=2, recipe=NOOP)
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        jobs = []
        for i in range(6):
            gpus = 2 if i % 3 == 0 else 1
            jobs.append((await _submit(client, f"job-{i}", gpus=gpus, steps="3", step_s="0.2"), gpus))
        records = [await j.wait(timeout=300) for j, _ in jobs]
        assert all(r.state is JobState.completed for r in records), [r.error for r in records]
        runs: dict[str, list[tuple[float, float, int]]] = {"small": [], "big": []}
        for (job, gpus), record in zip(jobs, records, strict=True):
            claims = [e async for e in job.events() if isinstance(e, StatusEvent) and e.state is JobState.in_progress]
            assert len(claims) == 1 and record.attempt == 1, f"{job.id} ran {len(claims)} times"
            owner = record.allocation[0].agent
            assert claims[0].agent == owner
            if gpus == 2:
                assert owner == "big", f"{job.id} needs 2 slots but ran on {owner}"
            runs[owner].append((record.started_at, record.finished_at, gpus))
        capacity = {"small": 1, "big": 2}
        for owner, spans in runs.items():
            for start, _, _ in spans:
                in_use = sum(g for s, f, g in spans if s <= start < f)
                assert in_use <= capacity[owner], f"{owner} ran {in_use} slots of work at once"
    finally:
        await client.close()


async def test_failing_job_is_retried_then_fails_with_its_output(settings, start_agent):
    start_agent(recipe=NOOP)
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset(ROWS)
        spec = JobSpec(job_id="crashy", model="unused", dataset=ref, max_attempts=2, labels={"noop.fail": "always"})
        job = await client.submit(spec)
        record = await job.wait(timeout=300)
        assert record.state is JobState.failed and record.attempt == 2
        assert "failing on purpose" in (record.error or "")
        flaky = await client.submit(
            JobSpec(job_id="flaky", model="unused", dataset=ref, max_attempts=2, labels={"noop.fail": "first"})
        )
        record = await flaky.wait(timeout=300)
        assert record.state is JobState.completed and record.attempt == 2
        states = [e.state for e in [e async for e in flaky.events()] if isinstance(e, StatusEvent)]
        assert states == [
            JobState.scheduled,
            JobState.in_progress,
            JobState.scheduled,
            JobState.in_progress,
            JobState.completed,
        ]
        info = await client.js.stream_info(client.names.jobs_stream)
        assert info.state.messages == 0, "nothing may stay in the queue"
    finally:
        await client.close()


async def test_sigterm_hands_running_jobs_back_to_the_fleet(settings, start_agent):
    import signal

    leaving = start_agent("leaving", recipe=NOOP)
    client = await Client.connect(settings)
    try:
        job = await _submit(client, "handed-back", steps="60", step_s="0.1")

        async def owned_by_leaving():
            rec = await job.status()
            return rec.state is JobState.in_progress and rec.owner == "leaving" and rec.step > 0

        await wait_for(owned_by_leaving, "the first agent to start the job", timeout=180)
        assert leaving.stop(signal.SIGTERM) == 0
        assert not processes_matching("handed-back"), "the leaving agent's torchrun must be gone"
        record = await job.status()
        assert record.state is JobState.scheduled and record.owner is None
        start_agent("staying", recipe=NOOP)
        record = await job.wait(timeout=300)
        assert record.state is JobState.completed and record.allocation[0].agent == "staying"
        assert record.attempt == 1, "a hand-back is not a failed attempt"
        messages = [e.message for e in [e async for e in job.events()] if isinstance(e, StatusEvent)]
        assert any("handed back by leaving" in m for m in messages)
    finally:
        await client.close()
