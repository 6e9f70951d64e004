"""Padding-free DPO computes what the padded path computes: losses, gradients and reference log-probs.

In one process, on TRL's own DPOTrainer and collator with the tiny Llama in float32: one padded micro-batch
of length-skewed pairs goes through TRL's loss as TRL runs it, then again with ``packing.install`` (what the
recipe installs), and the two must agree within ``TOLERANCE`` for the sigmoid, ipo and hinge losses, with a
live reference model and with precomputed reference log-probs. The 2-rank FSDP2 twin, through the real
recipe under torchrun, is ``test_recipe_long_rows.py::test_padding_free_matches_padded_on_two_ranks``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOLERANCE = 1e-5
SHIPPED = Path(__file__).resolve().parent.parent / "trl_nats" / "data" / "preferences.jsonl"


def skewed_rows(n: int = 8) -> list[dict]:
    """Shipped pairs with prompts and answers of very different lengths, so the padded batch is mostly padding."""
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines() if line.strip()][:n]
    for i, row in enumerate(rows):
        row["prompt"] = " ".join([row["prompt"]] * (1 + 3 * (i % 3 == 0)))
        if i % 4 == 1:
            row["chosen"] = row["chosen"] + " " + row["chosen"] + " " + row["chosen"]
    return rows


def _trainer(model_dir: Path, tmp_path: Path, loss_type: str):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = DPOConfig(
        output_dir=str(tmp_path / loss_type), per_device_train_batch_size=4, loss_type=[loss_type], beta=0.1,
        use_cpu=True, bf16=False, report_to="none", max_length=None, gradient_checkpointing=False,
        activation_checkpointing=False,
    )  # fmt: skip
    trainer = DPOTrainer(
        model=model, ref_model=None, args=config, train_dataset=Dataset.from_list(skewed_rows()),
        processing_class=tokenizer,
    )  # fmt: skip
    with torch.no_grad():  # a reference that differs from the policy, so the loss is not at its trivial value
        for param in trainer.model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return trainer


def _loss_and_grads(trainer, batch):
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge"])
def test_packed_losses_gradients_and_reference_equal_the_padded_ones(
    tiny_model: Path, tmp_path: Path, loss_type, monkeypatch
):
    import torch
    from trl_nats_agent.recipes import packing

    packed_calls = []
    real_pack = packing.pack_padded
    monkeypatch.setattr(packing, "pack_padded", lambda *a: packed_calls.append(a[0].shape) or real_pack(*a))

    trainer = _trainer(tiny_model, tmp_path, loss_type)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    mask = batch["attention_mask"]
    assert mask.float().mean() < 0.75, "the batch must carry padding for the comparison to mean something"

    live_padded = _loss_and_grads(trainer, batch)
    ref_padded = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    trainer.precompute_ref_logps = True
    pre_batch = {**batch, "ref_chosen_logps": ref_padded[0], "ref_rejected_logps": ref_padded[1]}
    pre_padded = _loss_and_grads(trainer, pre_batch)
    trainer.precompute_ref_logps = False

    packing.install(trainer.model)
    packing.install(trainer.ref_model)
    live_packed = _loss_and_grads(trainer, batch)
    ref_packed = trainer.compute_ref_log_probs(trainer.ref_model, batch)
    trainer.precompute_ref_logps = True
    pre_packed = _loss_and_grads(
        trainer, {**batch, "ref_chosen_logps": ref_packed[0], "ref_rejected_logps": ref_packed[1]}
    )

    # policy + live reference, the reference pass, policy with precomputed reference: each packed
    assert len(packed_calls) == 4, packed_calls
    for padded, packed in ((ref_padded[0], ref_packed[0]), (ref_padded[1], ref_packed[1])):
        assert torch.allclose(padded, packed, atol=TOLERANCE, rtol=0), (padded, packed)
    assert ref_padded[0].abs().min() > 1.0  # real log-probs, not the zeros of an empty mask
    for name, (padded, packed) in {"live": (live_padded, live_packed), "precomputed": (pre_padded, pre_packed)}.items():
        assert abs(padded[0] - packed[0]) < TOLERANCE, (name, padded[0], packed[0])
        assert padded[1].keys() == packed[1].keys() and padded[1]
        worst = max(float((padded[1][k] - packed[1][k]).abs().max()) for k in padded[1])
        assert worst < TOLERANCE, (name, worst)
        assert max(float(g.abs().max()) for g in padded[1].values()) > 1e-4  # gradients that can differ


def test_pack_padded_restarts_positions_and_shifts_labels_within_each_sequence():
    import torch
    from trl_nats_agent.recipes.packing import pack_padded, unpack

    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]])
    mask = (torch.arange(4) < torch.tensor([[3], [2], [4]])).long()
    labels = torch.tensor([[-100, 6, 7, -100], [-100, 9, -100, -100], [-100, -100, 3, 4]])
    packed = pack_padded(ids, mask, labels)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1, 2, 3, 4]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert packed["shift_labels"].tolist() == [[6, 7, -100, 9, -100, -100, 3, 4, -100]]
    back = unpack(torch.arange(1.0, 10.0).unsqueeze(0), packed["keep"])
    assert back.tolist() == [[1, 2, 3], [4, 5, 0], [6, 7, 8]]
