"""Reading what a training job left: its per-step losses from the events, and a LoRA adapter loaded with peft."""

from __future__ import annotations

import json
from pathlib import Path

from trl_nats.client import Client
from trl_nats.messages import Event, MetricsEvent


def losses(events: list[Event], attempt: int | None = None) -> list[tuple[int, float]]:
    """(step, loss) of every metrics event (of one attempt when given), in the order they were published."""
    return [
        (e.step, e.metrics["loss"])
        for e in events
        if isinstance(e, MetricsEvent) and "loss" in e.metrics and attempt in (None, e.attempt)
    ]


async def step_losses(client: Client, job_id: str, attempt: int | None = None) -> list[tuple[int, float]]:
    """:func:`losses` of the job's events, read from NATS."""
    return losses([e async for e in client.job(job_id).events()], attempt)


def assert_adapter_loads(adapter: Path, base: Path, *, rank: int) -> None:
    """``adapter`` is a PEFT LoRA adapter of ``rank`` that peft loads onto ``base`` and that changes its output."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == rank, config
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ids = torch.arange(1, 17).unsqueeze(0)
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(model, str(adapter)).eval()(input_ids=ids).logits
    assert (tuned - plain).abs().max() > 0, "the adapter changes nothing: it did not load or never trained"
