"""Peak memory of full DPO vs LoRA DPO on the same model, where the model's own bytes dominate (CPU or GPU).

    python benchmarks/dpo_memory.py [--rounds 3] [--steps 2] [--size default|small] [--out DIR]

Why this model: at 24 M parameters (``dpo_packing.py``'s model) the runtime and the activations are most of a
process's peak, and the process peaks of full and LoRA DPO came out equal. What LoRA saves grows with the
model: full DPO keeps the policy's weights, its gradients, Adam's two states and a reference copy (5 x the
weights); LoRA keeps the frozen weights once, plus a small adapter with its gradients and Adam states, and its
reference is the same weights with the adapter switched off. So the comparison runs on a random-init Llama of
~200 M parameters (hidden 1024, 14 layers, MLP 2816, 16 heads, vocab 8192, untied embeddings; float32 on CPU,
bf16 on CUDA), with short sequences (prompt 16 + answer 16 tokens, 2 pairs a step) and few steps, so the
activations stay small and the run stays short; two steps suffice, as Adam's states exist from the first
optimizer step on and every later step peaks the same way. ``--size small`` (hidden 256, 4 layers) is a
smoke run, where the runtime dominates and the goal is not expected to hold.

Sides, each in its own child process (so a peak is that side's alone), the recipe's own trainer
(``dpo._DPOTrainer``, packed batches, live reference, no activation checkpointing, AdamW):
- ``full``: every weight trains; TRL loads the reference model again (``ref_model=None``);
- ``lora``: the recipe's LoRA (rank 16, alpha 32, every linear layer but the output head, peft); the
  reference is the base model with the adapter disabled.
Rounds alternate the order (full, lora / lora, full). Per child: the process's peak resident memory
(``ru_maxrss``, everything: libraries, weights while they load, training state, activations), its resident
memory after the imports and before the model loads (the runtime floor), and the bytes of the tensors
training keeps for the whole run (weights, gradients, optimizer state, reference model; counted from the
objects, right after an optimizer step, before the gradients are freed). On CUDA also ``torch.cuda.max_memory_allocated``. Figures: medians over rounds with min and max,
ratios of medians, the load average before and after. Goal: LoRA <= 0.5x full (process peak).

Prints one JSON line per child and a summary JSON line; ``--out`` keeps the model and data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from random_llama import save_random_llama, save_word_tokenizer  # benchmarks/ is on the path when a script runs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIDES = ("full", "lora")
SIZES = {  # hidden, layers, MLP, heads
    "default": (1024, 14, 2816, 16),
    "small": (256, 4, 704, 8),
}
VOCAB = 8192
BATCH_PAIRS = 2
PROMPT_TOKENS = ANSWER_TOKENS = 16
ROWS = 64
LORA_RANK = 16
GOAL_LORA_VS_FULL = 0.5
GIB = 1 << 30


def build_inputs(work: Path, size: str) -> int:
    """The random-init model, a word-level tokenizer (one word = one token) and fixed-length rows; parameters."""
    model_dir = work / "model"
    words, vocab_size = save_word_tokenizer(model_dir, VOCAB - 4)
    hidden, layers, mlp, heads = SIZES[size]
    params = save_random_llama(
        model_dir, vocab_size=vocab_size, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=512, tie_word_embeddings=False,
    )  # fmt: skip

    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    rows = [
        {"prompt": text(PROMPT_TOKENS), "chosen": text(ANSWER_TOKENS), "rejected": text(ANSWER_TOKENS)}
        for _ in range(ROWS)
    ]
    (work / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return params


# -- one child: one side -----------------------------------------------------------------------------------


def child(side: str, work: Path, steps: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig
    from trl_nats_agent.recipes import dpo, lengths, modeling
    from trl_nats_agent.recipes.performance import Choice

    from trl_nats.messages import JobKind, JobSpec, LoraParams, TrainingParams

    cuda = torch.cuda.is_available()
    model_dir = work / "model"
    rows = [json.loads(line) for line in (work / "rows.jsonl").read_text().splitlines()]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    dataset = Dataset.from_list(rows)
    rss_runtime = _rss_now()  # libraries imported, nothing of the model yet
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    max_length = PROMPT_TOKENS + ANSWER_TOKENS + 8
    config = DPOConfig(
        output_dir=str(work / "out" / side), per_device_train_batch_size=BATCH_PAIRS, max_steps=steps,
        learning_rate=1e-5, beta=0.1, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
        max_length=max_length, use_cpu=not cuda, bf16=cuda, seed=0, data_seed=0, gradient_checkpointing=False,
        activation_checkpointing=False, dataloader_num_workers=0,
    )  # fmt: skip
    peft_config = None
    if side == "lora":
        lora = LoraParams(rank=LORA_RANK, alpha=2.0 * LORA_RANK, dropout=0.0, target_modules=["all-linear"])
        spec = JobSpec(
            job_id="memory", kind=JobKind.dpo, model=str(model_dir),
            dataset={"object": "x", "sha256": "0" * 64, "rows": len(rows), "bytes": 0},
            params=TrainingParams(lora=lora),
        )  # fmt: skip
        peft_config = modeling.lora_config(spec)
    batching = dpo.Batching(
        lengths.LengthBudget(max_length, max_length // 2, "benchmark"), Choice(True, "benchmark"), lambda _: None
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = dpo._DPOTrainer(
        model=model, ref_model=None, args=config, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config, reference=None, batching=batching,
    )  # fmt: skip
    dpo.install_packing(trainer)
    state: dict[str, int] = {}

    class StateAfterOptimizerStep(TrainerCallback):
        """Right after the optimizer step, before the gradients are zeroed: every kept tensor exists."""

        def on_optimizer_step(self, args, state_, control, **kw):
            state.update(training_state_bytes(trainer))

    trainer.add_callback(StateAfterOptimizerStep())
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "side": side,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "peak_rss_bytes": peak_rss,
        "runtime_rss_bytes": rss_runtime,
        "training_state_bytes": state,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "train_seconds": round(seconds, 1),
    }


def training_state_bytes(trainer) -> dict[str, int]:
    """Bytes of the tensors training keeps for its whole run: the policy's weights, their gradients, the
    optimizer's state, and a reference model's weights (activations come and go within a step)."""

    def size(tensors) -> int:
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    params = list(trainer.model.parameters())
    optimizer_state = [v for st in trainer.optimizer.state.values() for v in st.values() if hasattr(v, "numel")]
    ref = list(trainer.ref_model.parameters()) if trainer.ref_model is not None else []
    out = {"weights": size(params), "gradients": size(p.grad for p in params), "optimizer": size(optimizer_state),
           "reference": size(ref)}  # fmt: skip
    out["total"] = sum(out.values())
    return out


def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_child(work: Path, side: str, steps: int) -> dict:
    result = work / f"result-{side}.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "agents"), str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--child", side, "--work", str(work), "--steps", str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text())


def _spread(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values) / scale, digits),
        "min": round(min(values) / scale, digits),
        "max": round(max(values) / scale, digits),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--size", choices=sorted(SIZES), default="default")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", choices=SIDES, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = child(args.child, args.work, args.steps)
        (args.work / f"result-{args.child}.json").write_text(json.dumps(result))
        return

    work = args.out or Path(tempfile.mkdtemp(prefix="dpo-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    params = build_inputs(work, args.size)
    print(json.dumps({"model_parameters": params, "size": args.size, "load_average": load_before}), flush=True)
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    for round_ in range(args.rounds):
        for side in SIDES if round_ % 2 == 0 else tuple(reversed(SIDES)):
            r = run_child(work, side, args.steps)
            runs[side].append(r)
            print(json.dumps({"round": round_, **r, "load_average": _load()}), flush=True)

    peak = {s: [r["peak_rss_bytes"] for r in rs] for s, rs in runs.items()}
    floor = {s: [r["runtime_rss_bytes"] for r in rs] for s, rs in runs.items()}
    state = {s: [r["training_state_bytes"]["total"] for r in rs] for s, rs in runs.items()}
    med = {s: statistics.median(v) for s, v in peak.items()}
    above = {s: statistics.median(p - f for p, f in zip(peak[s], floor[s], strict=True)) for s in SIDES}
    state_med = {s: statistics.median(v) for s, v in state.items()}
    cuda = runs["full"][0]["cuda_peak_bytes"] is not None
    summary = {
        "figure": "dpo_memory",
        "device": "cuda" if cuda else "cpu",
        "model_parameters": params,
        "trainable_parameters": {s: runs[s][0]["trainable_parameters"] for s in SIDES},
        "rounds": args.rounds,
        "steps": args.steps,
        "peak_rss_gib": {s: _spread(v, GIB) for s, v in peak.items()},
        "runtime_rss_gib": {s: _spread(v, GIB) for s, v in floor.items()},
        "training_state_gib": {s: _spread(v, GIB) for s, v in state.items()},
        "training_state_parts_bytes": {s: runs[s][0]["training_state_bytes"] for s in SIDES},
        "lora_vs_full_peak_rss": round(med["lora"] / med["full"], 3),
        "lora_vs_full_peak_rss_per_round": [
            round(lo / fu, 3) for lo, fu in zip(peak["lora"], peak["full"], strict=True)
        ],
        "lora_vs_full_peak_above_runtime": round(above["lora"] / above["full"], 3),
        "lora_vs_full_training_state": round(state_med["lora"] / state_med["full"], 3),
        "load_average_before_after": [load_before, _load()],
    }
    if cuda:
        gpu = {s: statistics.median(r["cuda_peak_bytes"] for r in rs) for s, rs in runs.items()}
        summary["cuda_peak_gib"] = {s: round(v / GIB, 3) for s, v in gpu.items()}
        summary["lora_vs_full_cuda_peak"] = round(gpu["lora"] / gpu["full"], 3)
    summary["goal_lora_memory_met"] = summary["lora_vs_full_peak_rss"] <= GOAL_LORA_VS_FULL
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
