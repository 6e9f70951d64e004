"""A two-node DPO job paused mid-run and resumed: the job, the pause, and the run it must equal.

Shared by the pause tests of multi-node jobs (``tests/test_pause_gang.py``): one rank per node (gloo),
40 steps of 4 pairs over 40 shipped rows, so 4 epochs and the same data order is checked across the
resume. Every agent runs through :class:`support.fleet.Fleet`, so the paused run and the uninterrupted
one use the same threads per rank and their losses can be compared to 1e-6.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from support.fleet import Fleet
from support.paths import SHIPPED
from support.training import losses
from support.waiting import agents_up, wait_for
from trl_nats.client import Client, Job
from trl_nats.messages import DatasetRef, JobRecord, JobSpec, JobState, Resources, TrainingParams

# long enough that the pause (the record polled each second, then the next step boundary) lands mid-run
# even when steps are quick
STEPS = 40


def rows() -> list[dict]:
    return [json.loads(line) for line in SHIPPED.read_text().splitlines()[:40]]


def two_node_spec(job_id: str, model: Path, dataset: DatasetRef, steps: int = STEPS) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        model=str(model),
        dataset=dataset,
        resources=Resources(nodes=2, gpus_per_node=1),
        params=TrainingParams(
            max_steps=steps, per_device_batch_size=2, learning_rate=5e-4, max_length=128, save_steps=1000
        ),
        max_attempts=1,
    )


def uninterrupted_losses(tmp: Path, model: Path) -> list[tuple[int, float]]:
    """The per-step losses of the job run through without a pause, by two agents on loopback."""

    async def run() -> list[tuple[int, float]]:
        fleet = Fleet(tmp)
        try:
            for name in ("ref-a", "ref-b"):
                fleet.start_agent(name, slots=1)
            async with await Client.connect(fleet.settings) as client:
                await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
                job = await client.submit(two_node_spec("uninterrupted", model, await client.upload_dataset(rows())))
                record = await job.wait(timeout=900)
                assert record.state is JobState.completed, record.error
                steps = losses([e async for e in job.events()])
        finally:
            fleet.close()
        assert [s for s, _ in steps] == list(range(1, STEPS + 1)), steps
        return steps

    return asyncio.run(run())


async def pause_mid_run(job: Job, steps: int = STEPS) -> JobRecord:
    """Pause ``job`` once it has trained a couple of steps; the paused record, its checkpoint stored mid-run."""

    async def training():
        r = await job.status()
        return r if r.step >= 2 else None

    await wait_for(training, "the job to train a couple of steps", 600)
    pausing = await job.pause()
    assert pausing.state in (JobState.pausing, JobState.paused), pausing

    async def paused():
        r = await job.status()
        assert r.state in (JobState.pausing, JobState.paused), f"ended as {r.state.value} before pausing: {r.error}"
        return r if r.state is JobState.paused else None

    record = await wait_for(paused, "the job to pause", 300)
    ckpt = record.latest_checkpoint
    assert ckpt is not None and ckpt.location == f"nats://trl_artifacts/{job.id}/checkpoint-{ckpt.step}", record
    assert 0 < ckpt.step < steps and record.step == ckpt.step, f"the pause did not land mid-run: {record}"
    assert record.owner is None and record.allocation == [] and record.attempt == 0, "a pause is not a failed attempt"
    return record


async def wait_shown_free(fleet: Fleet, agent_ids: set[str]) -> None:
    """Until ``trl-nats agents`` shows each of ``agent_ids`` with its one slot free and no job."""

    async def freed():
        shown = {a["agent_id"]: a for a in await asyncio.to_thread(fleet.agents_json)}
        return all(i in shown and shown[i]["free_gpus"] == [0] and shown[i]["running_jobs"] == [] for i in agent_ids)

    await wait_for(freed, f"{sorted(agent_ids)} to show their GPUs free in `trl-nats agents`", 60)


def assert_same_losses(ours: list[tuple[int, float]], theirs: list[tuple[int, float]], steps: int = STEPS) -> None:
    assert [s for s, _ in ours] == list(range(1, steps + 1)), f"each step's metrics event exactly once: {ours}"
    for (step, a), (_, b) in zip(ours, theirs, strict=True):
        assert abs(a - b) <= 1e-6, f"step {step}: loss {a} after pause/resume, {b} uninterrupted"
