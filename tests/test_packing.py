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


def test_per_sequence_attention_equals_sdpa_with_the_block_diagonal_mask():
    """The packed attention kernel against SDPA over the whole row with an explicit per-sequence causal mask
    (what transformers builds for a packed row), grouped-query heads included: outputs and gradients."""
    import torch
    from trl_nats_agent.recipes import attention

    torch.manual_seed(0)
    lengths = [5, 7, 1, 9, 3]
    total = sum(lengths)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 2, True
    q = torch.randn(1, 4, total, 8, requires_grad=True)
    k = torch.randn(1, 2, total, 8, requires_grad=True)
    v = torch.randn(1, 2, total, 8, requires_grad=True)
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)

    out, _ = attention.varlen_sdpa_forward(module, q, k, v, None, scaling=8**-0.5, cu_seq_lens_q=bounds)
    seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    pos = torch.arange(total)
    mask = (seq[:, None] == seq[None, :]) & (pos[None, :] <= pos[:, None])
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), attn_mask=mask, scale=8**-0.5
    ).transpose(1, 2)
    assert out.shape == (1, total, 4, 8)
    assert torch.allclose(out, ref, atol=TOLERANCE, rtol=0), float((out - ref).abs().max())
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (q, k, v))
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.allclose(got, want, atol=TOLERANCE, rtol=0), float((got - want).abs().max())
        assert float(want.abs().max()) > 1e-3

    with pytest.raises(ValueError, match="do not span the packed row"):
        attention.varlen_sdpa_forward(module, q, k, v, None, cu_seq_lens_q=bounds[:-1])
    with pytest.raises(ValueError, match="without a mask"):
        attention.varlen_sdpa_forward(module, q, k, v, mask[None, None], cu_seq_lens_q=bounds)


def test_packed_calls_attend_per_sequence_and_other_calls_stay_sdpa(tiny_model: Path, tmp_path: Path, monkeypatch):
    """After ``packing.install`` a DPO step runs one causal SDPA call per sequence, builds no (row x row) mask,
    and gives the padded path's loss and gradients; calls that are not packed, and the saved config, are those
    of plain ``sdpa``."""
    import torch
    import transformers.masking_utils
    from trl_nats_agent.recipes import attention, packing

    trainer = _trainer(tiny_model, tmp_path, "sigmoid")
    model = trainer.model
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert model.config._attn_implementation == "sdpa"
    model.eval()
    with torch.no_grad():
        plain_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    padded = _loss_and_grads(trainer, batch)

    packing.install(model)
    packing.install(trainer.ref_model)
    assert model.config._attn_implementation == attention.NAME
    assert trainer.ref_model.config._attn_implementation == attention.NAME
    calls, masks = [], []
    real_forward, real_mask = attention.varlen_sdpa_forward, transformers.masking_utils.sdpa_mask

    def spy_forward(module, query, *args, cu_seq_lens_q=None, **kwargs):
        calls.append(None if cu_seq_lens_q is None else cu_seq_lens_q.tolist())
        return real_forward(module, query, *args, cu_seq_lens_q=cu_seq_lens_q, **kwargs)

    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, attention.NAME, spy_forward)
    monkeypatch.setattr(transformers.masking_utils, "sdpa_mask", lambda *a, **k: masks.append(1) or real_mask(*a, **k))
    packed = _loss_and_grads(trainer, batch)

    lengths = batch["attention_mask"].sum(dim=1).tolist()
    layers = model.config.num_hidden_layers
    # the reference pass and the policy pass, every layer, each with the batch's sequence boundaries
    assert calls == [[0, *torch.tensor(lengths).cumsum(0).tolist()]] * (2 * layers), calls
    assert masks == []
    assert abs(padded[0] - packed[0]) < TOLERANCE, (padded[0], packed[0])
    assert padded[1].keys() == packed[1].keys() and padded[1]
    worst = max(float((padded[1][k] - packed[1][k]).abs().max()) for k in padded[1])
    assert worst < TOLERANCE, worst

    model.eval()
    calls.clear()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert calls == [None] * layers and masks  # plain sdpa, with the usual padding mask
    assert torch.equal(logits, plain_logits)
    model.save_pretrained(tmp_path / "saved")
    assert attention.NAME not in (tmp_path / "saved" / "config.json").read_text()


def test_packed_attention_under_activation_checkpointing_equals_the_padded_path(
    tiny_model: Path, tmp_path: Path, monkeypatch
):
    """With activation checkpointing the layers run again in the backward pass, outside the packed call: they
    must still attend per sequence (the boundaries travel with the layer's arguments), not over the whole row."""
    from transformers import AttentionInterface
    from trl_nats_agent.recipes import attention, packing

    trainer = _trainer(tiny_model, tmp_path, "sigmoid")
    trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    padded = _loss_and_grads(trainer, batch)

    packing.install(trainer.model)
    packing.install(trainer.ref_model)
    calls = []
    real_forward = attention.varlen_sdpa_forward

    def spy_forward(module, query, *args, cu_seq_lens_q=None, **kwargs):
        calls.append(cu_seq_lens_q is not None)
        return real_forward(module, query, *args, cu_seq_lens_q=cu_seq_lens_q, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, attention.NAME, spy_forward)
    packed = _loss_and_grads(trainer, batch)

    layers = trainer.model.config.num_hidden_layers
    assert calls == [True] * (3 * layers), calls  # reference, policy, and the policy's layers again in backward
    assert abs(padded[0] - packed[0]) < TOLERANCE, (padded[0], packed[0])
    assert padded[1].keys() == packed[1].keys() and padded[1]
    worst = max(float((padded[1][k] - packed[1][k]).abs().max()) for k in padded[1])
    assert worst < TOLERANCE, worst
