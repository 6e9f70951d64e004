"""LoRA DPO as jobs through real agents, real torchrun and a real nats-server: an attempt whose ranks die
after a checkpoint is retried and continues the adapter from the stored checkpoint (the losses of an
uninterrupted run), and a two-node gang trains one adapter that loads with peft.

Pause and resume of a LoRA job is ``test_pause.py`` (parametrized full / LoRA); the recipe-level tests
(one process, FSDP2 on 2 ranks, the artifacts' format) are ``test_lora_dpo.py`` and
``test_recipe_dpo_features.py``.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from support import SHIPPED, agents_up, rank_pids, wait_for
from support.training import assert_adapter_loads, step_losses

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, LogEvent, LoraParams, Resources, StatusEvent, TrainingParams

pytestmark = pytest.mark.integration

LORA = LoraParams(rank=8, alpha=16.0, dropout=0.05)
TOLERANCE = 1e-6


def _spec(job_id: str, model, dataset, resources: Resources, steps: int, *, save_steps: int, attempts: int) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        model=str(model),
        dataset=dataset,
        resources=resources,
        params=TrainingParams(
            max_steps=steps, per_device_batch_size=2, learning_rate=5e-3, max_length=128, save_steps=save_steps,
            lora=LORA,
        ),
        max_attempts=attempts,
    )  # fmt: skip


def _same_losses(ours: list[tuple[int, float]], reference: dict[int, float], what: str) -> None:
    for step, loss in ours:
        assert abs(loss - reference[step]) <= TOLERANCE, (
            f"{what}, step {step}: loss {loss}, uninterrupted {reference[step]}"
        )


async def test_lora_dpo_attempt_killed_after_a_checkpoint_resumes_the_adapter_from_it(
    settings, start_agent, tiny_model, tmp_path
):
    """Both ranks SIGKILLed after a checkpoint was stored: attempt 2 resumes from it (adapter, optimizer, RNG
    and data position), so every step it trains has the loss of an uninterrupted run, and the final adapter
    loads with peft."""
    steps = 48  # 32 rows, 4 pairs a step: 6 epochs, long enough that the kill lands mid-run on a loaded machine
    agent = start_agent("lora-agent", slots=2, extra=["--checkpoint-store", "nats"])
    client = await Client.connect(settings)
    try:
        rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()[:32]]
        dataset = await client.upload_dataset(rows)
        two_ranks = Resources(gpus_per_node=2)
        ref_spec = _spec("lora-uninterrupted", tiny_model, dataset, two_ranks, steps, save_steps=1000, attempts=1)
        reference = await (await client.submit(ref_spec)).wait(timeout=900)
        assert reference.state is JobState.completed, reference.error
        uninterrupted = dict(await step_losses(client, "lora-uninterrupted"))
        assert sorted(uninterrupted) == list(range(1, steps + 1))

        job = await client.submit(
            _spec("lora-retried", tiny_model, dataset, two_ranks, steps, save_steps=4, attempts=3)
        )

        async def past_a_stored_checkpoint():
            r = await job.status()
            assert not r.state.terminal, f"the job ended as {r.state.value} before the kill: make it longer"
            ckpt = r.latest_checkpoint
            return (r, rank_pids("lora-retried")) if ckpt and ckpt.location and r.step > ckpt.step else None

        before, pids = await wait_for(past_a_stored_checkpoint, "a stored checkpoint and a step after it", 600)
        assert len(pids) == 2, pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

        record = await job.wait(timeout=900)
        assert record.state is JobState.completed, record.error
        assert record.attempt == 2 and record.step == steps
        events = [e async for e in job.events()]
        statuses = [e for e in events if isinstance(e, StatusEvent)]
        assert any(e.message.startswith("attempt 1 failed; retrying") for e in statuses), [e.message for e in statuses]

        first, second = await step_losses(client, "lora-retried", 1), await step_losses(client, "lora-retried", 2)
        stored = {c.step for c in record.checkpoints if c.location}
        assert second and second[0][0] - 1 in stored, (second[:1], stored)  # from a stored checkpoint, not step 0
        assert second[0][0] - 1 >= before.latest_checkpoint.step
        assert [s for s, _ in second] == list(range(second[0][0], steps + 1))
        logs = [e.line for e in events if isinstance(e, LogEvent) and e.attempt == 2]
        assert any(
            f"resuming from {agent.state_dir}" in line and f"checkpoint-{second[0][0] - 1}" in line for line in logs
        ), logs
        _same_losses(first, uninterrupted, "attempt 1")
        _same_losses(second, uninterrupted, "attempt 2, resumed")

        final = await client.pull("lora-retried", "final", tmp_path / "final")
        assert_adapter_loads(final.path, tiny_model, rank=LORA.rank)
    finally:
        await client.close()


async def test_two_node_lora_dpo_gang_completes_and_its_adapter_loads_with_peft(
    settings, start_agent, tiny_model, tmp_path
):
    """Two agents of one process slot each form a gang; the ranks shard the model with FSDP2 across both
    nodes and train one adapter, whose final copy is the adapter in PEFT format."""
    steps = 6
    for name in ("lora-n-a", "lora-n-b"):
        start_agent(name, slots=1, extra=["--gang-timeout", "60"])
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()[:24]]
        spec = _spec(
            "lora-gang", tiny_model, await client.upload_dataset(rows), Resources(nodes=2, gpus_per_node=1), steps,
            save_steps=1000, attempts=1,
        )  # fmt: skip
        record = await (await client.submit(spec)).wait(timeout=900)
        assert record.state is JobState.completed, record.error
        assert sorted(a.agent for a in record.allocation) == ["lora-n-a", "lora-n-b"]
        losses = await step_losses(client, "lora-gang")
        assert [s for s, _ in losses] == list(range(1, steps + 1))
        logs = [e.line for e in [e async for e in client.job("lora-gang").events()] if isinstance(e, LogEvent)]
        assert any("model ready (LoRA rank 8): FSDP2 over 2 ranks" in line for line in logs), logs

        final = await client.pull("lora-gang", "final", tmp_path / "final")
        assert_adapter_loads(final.path, tiny_model, rank=LORA.rank)
    finally:
        await client.close()
