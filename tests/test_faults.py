"""Faults with real processes: a SIGKILLed agent, a stale owner, a killed broker, a message nobody finishes.

Each test starts a real nats-server (file storage), real agents and real
torchrun. The pool consumers' ack wait is 10 s here (30 s by default), so a
dead agent's claim lapses sooner; every wait below is a hang guard only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pytest
from support import NOOP, ROWS, SHIPPED, processes_matching, wait_through_restarts

from trl_nats.client import Client
from trl_nats.messages import (
    CheckpointEvent,
    JobRecord,
    JobSpec,
    JobState,
    LogEvent,
    MetricsEvent,
    Resources,
    StatusEvent,
    TrainingParams,
)
from trl_nats.settings import NatsSettings
from trl_nats.topology import ensure_pool_consumer

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(nats_server) -> NatsSettings:
    return NatsSettings(servers=[nats_server.url], agent_ttl_s=5.0, ack_wait_s=10.0)


async def finished(client: Client, job_id: str) -> JobRecord:
    async def done():
        record = await client.store.get(job_id)
        return record if record.state.terminal else None

    return await wait_through_restarts(done, f"{job_id} to finish")


async def history(client: Client, job_id: str) -> list:
    return [e async for e in client.job(job_id).events()]


async def raw_events(client: Client, job_id: str) -> list:
    """Every message of the job in the events stream, straight from JetStream (duplicates would show here)."""
    sub = await client.js.subscribe(f"{client.names.events(job_id)}.>", ordered_consumer=True)
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except Exception:
                return out
            out.append((msg.headers or {}).get("Nats-Msg-Id"))
    finally:
        await sub.unsubscribe()


def noop_spec(job_id: str, ref, *, gpus: int = 1, max_attempts: int = 3, **labels: str) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        model="unused",
        dataset=ref,
        resources=Resources(gpus_per_node=gpus),
        max_attempts=max_attempts,
        labels={f"noop.{k}": v for k, v in labels.items()},
    )


# -- crash recovery ------------------------------------------------------------------


async def test_sigkilled_agent_job_resumes_on_another_agent_from_the_nats_checkpoint(
    settings, start_agent, tiny_model, tmp_path
):
    """DPO on 2 ranks; the agent is SIGKILLed after a checkpoint; another agent with its own disk resumes it."""
    first = start_agent("first", slots=2, extra=["--checkpoint-store", "nats"])
    client = await Client.connect(settings)
    steps = 16
    try:
        rows = [line for line in SHIPPED.read_text().splitlines()[:32]]
        import json

        spec = JobSpec(
            job_id="resumable",
            model=str(tiny_model),
            dataset=await client.upload_dataset([json.loads(r) for r in rows]),
            resources=Resources(gpus_per_node=2),
            params=TrainingParams(
                max_steps=steps, per_device_batch_size=2, learning_rate=5e-4, max_length=128, save_steps=3
            ),
            max_attempts=3,
        )
        job = await client.submit(spec)

        async def stored_checkpoint():
            record = await job.status()
            return record if record.latest_checkpoint else None

        before = await wait_through_restarts(stored_checkpoint, "a stored checkpoint")
        first.stop(signal.SIGKILL)
        ckpt = before.latest_checkpoint
        assert ckpt.location.startswith("nats://trl_artifacts/resumable/checkpoint-") and ckpt.sha256
        assert before.step < steps, "the job finished before the kill: make it longer"

        # the agent's torchrun and both ranks die with it (PDEATHSIG on torchrun, and on each rank)
        await wait_through_restarts(
            lambda: _none_left(str(first.state_dir)), "the first agent's training processes to die", 30
        )

        second = start_agent("second", slots=2, extra=["--checkpoint-store", "nats"])
        record = await finished(client, "resumable")
        assert record.state is JobState.completed, record.error
        assert record.attempt == 2 and record.allocation[0].agent == "second"
        assert record.step == steps, "the resumed run ends at the same step as an uninterrupted one"
        assert not (second.state_dir / "outputs" / "resumable" / f"checkpoint-{ckpt.step - 1}").exists()

        events = await history(client, "resumable")
        claims = [
            (e.attempt, e.agent) for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress
        ]
        assert claims == [(1, "first"), (2, "second")]
        first_steps = [e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 1 and "loss" in e.metrics]
        second_steps = [
            e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 2 and "loss" in e.metrics
        ]
        assert first_steps[0] == 1 and first_steps[-1] >= ckpt.step
        resumed_from = record.checkpoints and [c for c in record.checkpoints if c.location == ckpt.location]
        assert resumed_from, "the fetched checkpoint is in the record's list"
        assert second_steps == list(range(second_steps[0], steps + 1))
        # it resumed from the stored checkpoint (or a later one stored before the kill), not from step 0
        assert second_steps[0] - 1 in [c.step for c in before.checkpoints if c.location]
        logs = [e.line for e in events if isinstance(e, LogEvent) and e.attempt == 2]
        assert any("resuming from checkpoint" in line and "written by" in line for line in logs), logs
        final = [e.checkpoint for e in events if isinstance(e, CheckpointEvent) and e.checkpoint.final]
        assert [c.step for c in final] == [steps]
        assert (second.state_dir / "outputs" / "resumable" / "final" / "model.safetensors").is_file()
    finally:
        await client.close()


async def _none_left(needle: str) -> bool:
    return not processes_matching(needle)


async def test_stale_owner_can_neither_write_nor_ack_after_losing_its_claim(settings, start_agent):
    agent = start_agent("slow", slots=1, recipe=NOOP)
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset(ROWS)
        job = await client.submit(noop_spec("stolen", ref, steps="40", step_s="0.25"))

        async def running():
            r = await job.status()
            return r.state is JobState.in_progress and r.step > 0

        await wait_through_restarts(running, "the job to run")
        # another agent takes the claim over (as after a network partition): owner and attempt move on
        stolen = await client.store.transition(
            "stolen",
            JobState.in_progress,
            owner="slow",
            attempt=1,
            change=lambda r: {"owner": "thief", "attempt": 2, "runs": r.runs + 1},
        )
        await wait_through_restarts(
            lambda: _none_left(str(agent.state_dir / "jobs" / "stolen")), "the stale run to stop", 60
        )
        await asyncio.sleep(1.0)
        record, _ = await client.store.get_with_revision("stolen")
        assert record.owner == "thief" and record.attempt == 2 and record.state is JobState.in_progress
        assert record.updated_at == stolen.updated_at, "the stale owner wrote to the record"
        info = await client.js.consumer_info(client.names.jobs_stream, client.names.pool_consumer("n1g1any"))
        assert info.num_ack_pending == 1, "the stale owner must not ack (JetStream would accept it)"
        assert "lost its claim" in agent.log()

        # "thief" never heartbeats: its claim lapses and the job completes, as attempt 3
        record = await finished(client, "stolen")
        assert record.state is JobState.completed and record.attempt == 3 and record.owner == "slow"
        attempts = [e.attempt for e in await history(client, "stolen") if isinstance(e, StatusEvent)]
        assert attempts.count(3) >= 2, attempts
        assert (await client.js.stream_info(client.names.jobs_stream)).state.messages == 0
    finally:
        await client.close()


async def test_message_delivered_max_deliver_times_fails_the_job_and_leaves_no_message(settings, start_agent):
    """A submission that JetStream gives up on (here: a broken consumer naks it every time) must not sit in the
    queue unseen: an agent handles the MAX_DELIVERIES advisory, and sweeps up one sent while no agent ran."""
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset(ROWS)
        limited = NatsSettings(servers=settings.servers, max_deliver=2)
        durable = await ensure_pool_consumer(client.js, limited, "n1g2any")
        sub = await client.js.pull_subscribe_bind(durable, client.names.jobs_stream)

        async def nak_until_given_up(job_id: str) -> None:
            # no agent up serves n1g2any (the point): past the fleet check, which would refuse it
            await client.submit(noop_spec(job_id, ref, gpus=2), check_fleet=False)
            delivered = 0
            while delivered < 2:
                for msg in await sub.fetch(1, timeout=10):
                    delivered += 1
                    await msg.nak()
            # JetStream sends the advisory when it next tries to deliver: a consumer keeps pulling
            with contextlib.suppress(Exception):
                await sub.fetch(1, timeout=1)

        await nak_until_given_up("missed")  # nobody hears this advisory
        assert (await client.store.get("missed")).state is JobState.scheduled
        agent = start_agent("watcher", slots=1, recipe=NOOP)  # serves n1g1any only; handles every advisory
        record = await finished(client, "missed")
        assert record.state is JobState.failed and "delivered the submission 2 times" in record.error

        await nak_until_given_up("heard")
        record = await finished(client, "heard")
        assert record.state is JobState.failed
        assert "delivered the submission 2 times" in record.error and "max_deliver" in record.error
        info = await client.js.stream_info(client.names.jobs_stream)
        assert info.state.messages == 0, "no message may stay in the queue"
        assert agent.log().count("removing it from the queue") == 2
        states = [e.state for e in await history(client, "heard") if isinstance(e, StatusEvent)]
        assert states == [JobState.scheduled, JobState.failed]
    finally:
        await client.close()


# -- broker restart --------------------------------------------------------------------


async def test_broker_sigkilled_and_restarted_mid_job(settings, start_agent, nats_server):
    start_agent("steady", slots=1, recipe=NOOP, extra=["--checkpoint-store", "nats"])
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset(ROWS)
        job = await client.submit(noop_spec("survivor", ref, steps="60", step_s="0.1", save_every="10"))

        async def one_checkpoint():
            record = await job.status()
            return record.latest_checkpoint is not None

        await wait_through_restarts(one_checkpoint, "the first stored checkpoint")
        nats_server.restart(kill=True)  # SIGKILL; file storage; same port
        record = await finished(client, "survivor")
        assert record.state is JobState.completed, record.error
        assert record.attempt == 1 and record.runs == 1, "the agent kept its claim through the restart"
        assert [c.step for c in record.checkpoints] == [10, 20, 30, 40, 50, 60]
        assert record.checkpoints[-1].final and record.latest_checkpoint.step == 50
        assert record.step == 60

        ids = await raw_events(client, "survivor")
        assert len(ids) == len(set(ids)), f"duplicated events: {[i for i in ids if ids.count(i) > 1]}"
        events = await history(client, "survivor")
        metrics = [e.step for e in events if isinstance(e, MetricsEvent)]
        assert metrics == list(range(1, 61)), "every step's event landed once"
        assert [e.checkpoint.step for e in events if isinstance(e, CheckpointEvent)] == [10, 20, 30, 40, 50, 60]
        states = [e.state for e in events if isinstance(e, StatusEvent)]
        assert states == [JobState.scheduled, JobState.in_progress, JobState.completed]
        assert (await client.js.stream_info(client.names.jobs_stream)).state.messages == 0
    finally:
        await client.close()
