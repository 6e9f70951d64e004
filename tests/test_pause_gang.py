"""A multi-node job that loses a node resumes on every node from the stored checkpoint, not from step 0.

Real agents on loopback (separate processes and state dirs), real torchrun rendezvous, the no-op
trainer (it resumes from the step in a checkpoint's completion marker). The node that replaces the
lost one has nothing of the job on its disk: it fetches the checkpoint from the artifact store.
"""

from __future__ import annotations

import signal

import pytest
from support.processes import NOOP
from support.waiting import agents_up, wait_for

from trl_nats.artifacts import MANIFEST_FILE
from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, LogEvent, MetricsEvent, Resources, StatusEvent

pytestmark = pytest.mark.integration

ROWS = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(4)]
STEPS = 200


async def test_gang_that_loses_a_node_resumes_on_both_nodes_from_the_stored_checkpoint(settings, start_agent):
    agents = {name: start_agent(name, slots=1, recipe=NOOP, extra=["--gang-timeout", "8"]) for name in ("n-a", "n-b")}
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        spec = JobSpec(
            job_id="gang-resume",
            model="unused",
            dataset=await client.upload_dataset(ROWS),
            resources=Resources(nodes=2, gpus_per_node=1),
            max_attempts=3,
            labels={"noop.steps": str(STEPS), "noop.step_s": "0.1", "noop.save_every": "5"},
        )
        job = await client.submit(spec)

        async def stored():
            r = await job.status()
            return r if r.latest_checkpoint and r.latest_checkpoint.location and r.step >= 6 else None

        before = await wait_for(stored, "a stored checkpoint of the gang", 300)
        assert before.latest_checkpoint.location.startswith("nats://trl_artifacts/gang-resume/checkpoint-")
        member = next(a.agent for a in before.allocation if a.agent != before.owner)
        agents[member].stop(signal.SIGKILL)  # a node is lost: the gang stops and the job is retried as one
        replacement = start_agent("n-c", slots=1, recipe=NOOP, extra=["--gang-timeout", "8"])

        record = await job.wait(timeout=600)
        assert record.state is JobState.completed, record.error
        assert record.attempt == 2 and sorted(a.agent for a in record.allocation) == sorted([before.owner, "n-c"])
        events = [e async for e in job.events()]
        claims = [e.attempt for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress]
        assert claims == [1, 2]
        second = [e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 2]
        stored_steps = [c.step for c in record.checkpoints if c.location and not c.final and c.step < second[0]]
        assert second and second[0] - 1 in stored_steps and second[0] > 1, "attempt 2 started over from step 0"
        assert second == list(range(second[0], STEPS + 1))
        logs = [e.line for e in events if isinstance(e, LogEvent) and e.attempt == 2]
        assert any("resuming from" in line for line in logs), logs
        # the new node had nothing of this job: it fetched the checkpoint, verified, from the object store
        fetched = replacement.state_dir / "outputs" / "gang-resume" / f"checkpoint-{second[0] - 1}"
        assert (fetched / MANIFEST_FILE).is_file() and (fetched / "trl_nats_complete.json").is_file()
    finally:
        await client.close()


async def test_two_node_dpo_paused_and_resumed_as_one_matches_an_uninterrupted_run(settings, start_agent, tiny_model):
    """Pause reaches every rank on both nodes at the same step; on resume both nodes continue from the stored
    checkpoint, and the per-step losses equal an uninterrupted two-node run's."""
    import json
    from pathlib import Path

    from trl_nats.messages import TrainingParams

    # long enough that the pause (the record polled each second, then the next step boundary) lands mid-run
    # even when steps are quick: 40 rows, 4 per step, so 4 epochs
    steps = 40
    for name in ("n-a", "n-b"):
        start_agent(name, slots=1, extra=["--gang-timeout", "60"])
    shipped = Path(__file__).resolve().parent.parent / "trl_nats" / "data" / "preferences.jsonl"
    rows = [json.loads(line) for line in shipped.read_text().splitlines()[:40]]
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        dataset = await client.upload_dataset(rows)

        def spec(job_id: str) -> JobSpec:
            return JobSpec(
                job_id=job_id,
                model=str(tiny_model),
                dataset=dataset,
                resources=Resources(nodes=2, gpus_per_node=1),
                params=TrainingParams(
                    max_steps=steps, per_device_batch_size=2, learning_rate=5e-4, max_length=128, save_steps=1000
                ),
                max_attempts=1,
            )

        reference = await (await client.submit(spec("gang-ref"))).wait(timeout=900)
        assert reference.state is JobState.completed, reference.error
        job = await client.submit(spec("gang-paused"))

        async def training():
            r = await job.status()
            return r if r.step >= 2 else None

        await wait_for(training, "the gang to train a couple of steps", 600)
        await job.pause()

        async def paused():
            r = await job.status()
            assert r.state in (JobState.pausing, JobState.paused), f"ended as {r.state.value}: {r.error}"
            return r if r.state is JobState.paused else None

        record = await wait_for(paused, "the gang to pause", 300)
        ckpt = record.latest_checkpoint
        assert ckpt and ckpt.location and 0 < ckpt.step < steps, record
        await wait_for(lambda: _all_free(client), "both nodes' GPUs to be free", 60)
        assert await client.list_gangs() == []

        await job.resume()
        record = await job.wait(timeout=900)
        assert record.state is JobState.completed, record.error
        assert record.step == steps and len(record.allocation) == 2

        async def losses(job_id: str) -> list[tuple[int, float]]:
            events = [e async for e in client.job(job_id).events()]
            return [(e.step, e.metrics["loss"]) for e in events if isinstance(e, MetricsEvent) and "loss" in e.metrics]

        ours, theirs = await losses("gang-paused"), await losses("gang-ref")
        assert [s for s, _ in ours] == list(range(1, steps + 1)), "each step's metrics event exactly once"
        for (step, a), (_, b) in zip(ours, theirs, strict=True):
            assert abs(a - b) <= 1e-6, f"step {step}: loss {a} after pause/resume, {b} uninterrupted"
        events = [e async for e in job.events()]
        logs = [e.line for e in events if isinstance(e, LogEvent)]
        assert any("resuming from" in line and f"checkpoint-{ckpt.step}" in line for line in logs), logs
    finally:
        await client.close()


async def _all_free(client: Client) -> bool:
    agents = await client.list_agents()
    return len(agents) == 2 and all(a.free_gpus == [0] and not a.running_jobs for a in agents)
