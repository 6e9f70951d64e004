"""A DPO job on the tiny model, end to end: client -> NATS -> a real agent -> torchrun (2 CPU ranks, FSDP2).

The same job on one rank (per_device_batch_size doubled, so every optimizer
step sees the same pairs: see test_recipe.py) must produce the same losses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support import SHIPPED

from trl_nats.client import Client
from trl_nats.messages import CheckpointEvent, JobSpec, JobState, MetricsEvent, Resources, TrainingParams

pytestmark = pytest.mark.integration


def _weights(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


async def _run(client: Client, job_id: str, model: Path, rows: list[dict], gpus: int, batch: int):
    spec = JobSpec(
        job_id=job_id,
        model=str(model),
        dataset=await client.upload_dataset(rows),
        resources=Resources(gpus_per_node=gpus),
        params=TrainingParams(
            max_steps=8, per_device_batch_size=batch, learning_rate=5e-4, max_length=160, save_steps=3, beta=0.1
        ),
        max_attempts=1,
    )
    job = await client.submit(spec)
    record = await job.wait(timeout=900)
    events = [e async for e in job.events()]
    return record, events


async def test_dpo_job_on_two_ranks_with_fsdp2_completes_and_matches_one_rank(settings, start_agent, tiny_model):
    agent = start_agent("gpu-node", slots=2)
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()[:64]]
    client = await Client.connect(settings)
    try:
        two, two_events = await _run(client, "dpo-2ranks", tiny_model, rows, gpus=2, batch=2)
        assert two.state is JobState.completed, two.error
        one, one_events = await _run(client, "dpo-1rank", tiny_model, rows, gpus=1, batch=4)
        assert one.state is JobState.completed, one.error
    finally:
        await client.close()

    # per-step metrics events, every step, readable
    steps = [e for e in two_events if isinstance(e, MetricsEvent) and "loss" in e.metrics]
    assert [e.step for e in steps] == list(range(1, 9))
    assert all("rewards/margins" in e.metrics and e.total_steps == 8 for e in steps)
    assert two.allocation[0].gpus == [0, 1] and two.allocation[0].agent == "gpu-node"

    # FSDP2 really sharded the policy across the two ranks
    sharding = [line for line in _log_lines(two_events) if "held by rank 0" in line]
    assert sharding and "(sharded)" in sharding[0], sharding

    # at least two checkpoints during training, then the final model; all in the job record too
    ckpts = [e.checkpoint for e in two_events if isinstance(e, CheckpointEvent)]
    during = [c for c in ckpts if not c.final]
    assert [c.step for c in during][:2] == [3, 6] and ckpts[-1].final  # Trainer also saves the last step
    assert [c.step for c in two.checkpoints] == [c.step for c in ckpts]

    # the final model loads with transformers and has moved away from the initial weights
    from transformers import AutoModelForCausalLM

    final = Path(ckpts[-1].path)
    AutoModelForCausalLM.from_pretrained(final)
    initial, trained = _weights(tiny_model), _weights(final)
    assert initial.keys() == trained.keys()
    assert max(float((initial[k] - trained[k]).abs().max()) for k in initial) > 1e-4
    for c in during:
        AutoModelForCausalLM.from_pretrained(c.path)

    # the same job on one rank: the same losses
    one_losses = {e.step: e.metrics["loss"] for e in one_events if isinstance(e, MetricsEvent) and "loss" in e.metrics}
    two_losses = {e.step: e.metrics["loss"] for e in steps}
    assert one_losses.keys() == two_losses.keys()
    worst = max(abs(one_losses[s] - two_losses[s]) for s in two_losses)
    assert worst < 1e-4, f"losses differ by up to {worst}"
    assert agent.proc.poll() is None


def _log_lines(events) -> list[str]:
    from trl_nats.messages import LogEvent

    return [e.line for e in events if isinstance(e, LogEvent)]
