"""LoRA DPO, in one process on the recipe's own trainer class: it learns, it changes only the adapter, its
reference is the base model, and the adapter it saves reproduces the trained model on the base.

The recipe-level twins (real torchrun, FSDP2 on 2 ranks, precomputed reference, the PEFT artifacts in
``final``/``final_adapter``) are in ``test_recipe_dpo_features.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parent.parent / "trl_nats" / "data" / "preferences.jsonl"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig
    from trl_nats_agent.recipes import dpo, lengths
    from trl_nats_agent.recipes.modeling import lora_config
    from trl_nats_agent.recipes.performance import Choice

    from trl_nats.messages import JobKind, JobSpec, LoraParams, TrainingParams

    out = tmp_path_factory.mktemp("lora-dpo")
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines() if line.strip()][:16]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    spec = JobSpec(
        job_id="lora", kind=JobKind.dpo, model=str(tiny_model),
        dataset={"object": "x", "sha256": "0" * 64, "rows": 16, "bytes": 0},
        params=TrainingParams(lora=LoraParams(rank=8, alpha=16.0, dropout=0.0, target_modules=["all-linear"])),
    )  # fmt: skip
    config = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=4, max_steps=12, learning_rate=5e-3, beta=0.1,
        use_cpu=True, bf16=False, report_to="none", max_length=128, gradient_checkpointing=False,
        activation_checkpointing=False, logging_steps=1, save_strategy="no", lr_scheduler_type="constant",
    )  # fmt: skip
    budget = lengths.LengthBudget(128, 64, "test")
    trainer = dpo._DPOTrainer(
        model=model, ref_model=None, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        peft_config=lora_config(spec), reference=None, batching=dpo.Batching(budget, Choice(True, "test"), print),
    )  # fmt: skip
    dpo.install_packing(trainer)
    assert trainer.ref_model is None, "LoRA DPO must not load a second copy of the model"
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    trainer.save_model(str(out / "adapter"))
    return {
        "trainer": trainer, "base": base, "batch": batch, "before": before, "out": out, "tiny": tiny_model,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    }  # fmt: skip


def _logps(model, batch):
    import torch

    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    target = labels[:, 1:]
    per_token = torch.log_softmax(logits.float(), -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (per_token * (target != -100)).sum(-1)


def test_lora_dpo_learns_and_changes_only_the_adapter(trained):
    losses = trained["losses"]
    assert len(losses) == 12 and losses[-1] < losses[0], losses
    changed = {n for n, p in trained["trainer"].model.named_parameters() if not (p == trained["before"][n]).all()}
    assert changed, "nothing trained"
    assert all("lora_" in n for n in changed), sorted(changed)[:5]
    assert any("lora_B" in n for n in changed)


def test_lora_reference_log_probs_are_the_base_models(trained):
    import torch

    trainer, batch = trained["trainer"], trained["batch"]
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    base = _logps(trained["base"], batch)
    assert torch.allclose(torch.cat([ref_chosen, ref_rejected]), base, atol=TOLERANCE * 10, rtol=1e-6), (
        ref_chosen,
        base,
    )
    trained_now = _logps(trainer.model, batch)
    assert (trained_now - base).abs().max() > 1e-3, "the adapter changed nothing the reference could differ from"


def test_saved_adapter_loads_with_peft_and_reproduces_the_trained_model(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = trained["out"] / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    fresh = AutoModelForCausalLM.from_pretrained(trained["tiny"], dtype=torch.float32)
    loaded = PeftModel.from_pretrained(fresh, str(adapter)).eval()
    batch = trained["batch"]
    trained_model = trained["trainer"].model.eval()
    with torch.no_grad():
        want = trained_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        got = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(want, got, atol=1e-5, rtol=0), float((want - got).abs().max())


def test_memory_estimate_counts_the_adapter_peft_builds(trained):
    """The estimate's adapter size (``modeling.lora_parameter_count``, computed before peft runs) is what peft
    trains: for all-linear here, and for a named list of modules on a fresh model."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from trl_nats_agent.recipes.modeling import lora_config, lora_parameter_count

    from trl_nats.messages import JobKind, JobSpec, LoraParams, TrainingParams

    trainable = sum(p.numel() for p in trained["trainer"].model.parameters() if p.requires_grad)
    assert lora_parameter_count(trained["base"], LoraParams(rank=8, target_modules=["all-linear"])) == trainable

    lora = LoraParams(rank=4, target_modules=["q_proj", "v_proj"])
    spec = JobSpec(
        job_id="count", kind=JobKind.dpo, model=str(trained["tiny"]),
        dataset={"object": "x", "sha256": "0" * 64, "rows": 1, "bytes": 0}, params=TrainingParams(lora=lora),
    )  # fmt: skip
    fresh = AutoModelForCausalLM.from_pretrained(trained["tiny"], dtype=torch.float32)
    expected = lora_parameter_count(fresh, lora)
    peft_model = get_peft_model(fresh, lora_config(spec))
    assert expected == sum(p.numel() for p in peft_model.parameters() if p.requires_grad) > 0
