"""Padding-free vs padded DPO on a length-skewed preference dataset (CPU or GPU).

    python benchmarks/dpo_packing.py [--rounds 3] [--steps 8] [--warmup 2] [--rows 512] [--threads N] [--out DIR]
                                     [--small]

Model: a random-init Llama of ~24 M parameters (hidden 512, 6 layers, MLP 1024, 8 heads, vocab 8192,
untied embeddings; ``--small``: hidden 128, 2 layers, for a smoke run), float32 on CPU, bf16 on CUDA, a
word-level tokenizer (one word = one token, so lengths are exact).

Data (made here, seeded): 512 pairs whose lengths follow the long-tailed shape of real chat preference data
(most prompts short, a few very long; answers of uneven length; chosen and rejected of different lengths):
prompt words ~ LogNormal(median 48, sigma 0.9) and each answer's words ~ LogNormal(median 64, sigma 0.8),
clipped to [4, 700] and [2, 400]. Printed: mean, median, p90, max, and the padding a random 4-pair batch
carries (the share of a padded batch's positions that are padding).

Variants, all in one child process per round (imports paid once), their order reversed every other round,
4 pairs per step, live reference model, max_length 1024 (no row is cut):
- ``trl_defaults``: TRL's DPOTrainer as TRL configures it (gradient checkpointing on, random batches,
  padded), with only the CPU switches FACTS.md requires (use_cpu, no bf16 on CPU).
- ``padded``: the recipe's trainer with padding-free off and random batches (the recipe before packing).
- ``grouped``: the recipe's fallback where packing is not shown correct: padded, length-grouped batches.
- ``padding_free``: the recipe's default for Llama: packed micro-batches, no padding computed.
Real tokens/s counts only non-padding tokens (chosen and rejected, prompt included) of the measured steps
(after ``--warmup``), over their wall time and over the process's CPU time (all threads: on a machine
shared with other work, wall time also counts the waits for a core). Figures: median over rounds of each
round's figure, with min and max, ratios of medians, and each round's padding-free / padded ratio. The
goal (padding-free >= 1.5x padded) is judged on CPU time. Each figure line carries the load average.

``--threads N`` sets torch's intra-op threads in every child (default: torch's own, one per core). On a
machine shared with other work use ``--threads 1``: with two threads on two busy cores, one thread spins at
every parallel op's barrier while its partner waits for a core, and that spinning is CPU time too, more of
it the smaller the ops (the packed row's are smaller than the padded batch's), so the CPU-time figures then
measure the machine's load as much as the recipe.

Memory of full vs LoRA DPO is ``benchmarks/dpo_memory.py`` (a model big enough for its bytes to dominate).

Prints one JSON line per child run and a summary JSON line at the end; ``--out`` keeps the model and data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from random_llama import save_random_llama, save_word_tokenizer  # benchmarks/ is on the path when a script runs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VARIANTS = ("trl_defaults", "padded", "grouped", "padding_free")
BATCH_PAIRS = 4
ROWS = 512
MAX_LENGTH = 1024
GOAL_PACKED_VS_PADDED = 1.5


def lognormal_words(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return max(low, min(high, int(round(math.exp(rng.gauss(math.log(median), sigma))))))


def build_inputs(work: Path, small: bool, n_rows: int) -> tuple[Path, Path, int, dict]:
    rng = random.Random(0)
    model_dir = work / "model"
    words, vocab_size = save_word_tokenizer(model_dir, 8192 - 8)
    hidden, layers, mlp = (128, 2, 256) if small else (512, 6, 1024)
    params = save_random_llama(
        model_dir, vocab_size=vocab_size, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048, tie_word_embeddings=False,
    )  # fmt: skip

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    rows, sizes = [], []
    for _ in range(n_rows):
        p = lognormal_words(rng, 48, 0.9, 4, 700)
        c = lognormal_words(rng, 64, 0.8, 2, 400)
        r = lognormal_words(rng, 64, 0.8, 2, 400)
        rows.append({"prompt": text(p), "chosen": text(c), "rejected": text(r)})
        sizes.append((p, c, r))
    rows_path = work / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seqs = [p + x for p, c, r in sizes for x in (c, r)]
    pad = []
    for _ in range(200):
        batch = rng.sample(sizes, BATCH_PAIRS)
        lens = [p + x for p, c, r in batch for x in (c, r)]
        pad.append(1 - sum(lens) / (len(lens) * max(lens)))
    q = statistics.quantiles(seqs, n=10)
    shape = {
        "sequence_tokens": {"mean": round(statistics.mean(seqs), 1), "median": statistics.median(seqs),
                            "p90": q[-1], "max": max(seqs)},
        "padding_share_random_batch": round(statistics.mean(pad), 3),
    }  # fmt: skip
    return model_dir, rows_path, params, shape


# -- one child: one variant, one round ---------------------------------------------------------------


def child(
    variant: str, model_dir: Path, rows_path: Path, out_dir: Path, steps: int, threads: int | None = None
) -> dict:
    import gc

    import torch

    if threads:
        torch.set_num_threads(threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer
    from trl_nats_agent.recipes import dpo, lengths
    from trl_nats_agent.recipes.performance import Choice

    cuda = torch.cuda.is_available()
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    recipe = variant != "trl_defaults"
    kwargs = dict(
        output_dir=str(out_dir), per_device_train_batch_size=BATCH_PAIRS, max_steps=steps, learning_rate=1e-5,
        beta=0.1, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, max_length=MAX_LENGTH,
        use_cpu=not cuda, bf16=cuda, seed=0, data_seed=0,
    )  # fmt: skip
    if recipe:
        kwargs.update(gradient_checkpointing=False, activation_checkpointing=False)
    if variant == "grouped":
        kwargs.update(train_sampling_strategy="group_by_length", length_column_name=dpo.LENGTH_COLUMN)
    config = DPOConfig(**kwargs)
    tokens: list[int] = []

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            self.cpu.append(time.process_time())

    clock = Clock()
    common = dict(model=model, ref_model=None, args=config, train_dataset=Dataset.from_list(rows),
                  processing_class=tokenizer, callbacks=[clock])  # fmt: skip
    if recipe:
        packed = Choice(variant == "padding_free", variant)
        batching = dpo.Batching(lengths.LengthBudget(MAX_LENGTH, MAX_LENGTH // 2, "benchmark"), packed, lambda _: None)
        trainer = dpo._DPOTrainer(**common, reference=None, batching=batching)
        if packed.on:
            dpo.install_packing(trainer)
    else:
        trainer = DPOTrainer(**common)
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        tokens.append(int(batch["attention_mask"].sum()))
        return batch

    trainer.data_collator = counting_collator
    start = time.perf_counter()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    del trainer, model
    gc.collect()
    return {
        "variant": variant, "start": start, "step_end": clock.times, "step_end_cpu": clock.cpu,
        "tokens": tokens[: len(clock.times)], "losses": losses,
    }  # fmt: skip


def run_child(work: Path, variants: list[str], steps: int, threads: int | None = None) -> list[dict]:
    """One child process running ``variants`` in order; their results."""
    result = work / "result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "agents"), str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--child", ",".join(variants), "--work", str(work), "--steps", str(steps)]
    cmd += ["--threads", str(threads)] if threads else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{variants} failed:\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text())


def tokens_per_s(run: dict, warmup: int, clock: str = "step_end") -> float:
    """Real tokens of the steps after ``warmup`` over their wall time (``step_end``) or the process's CPU time
    (``step_end_cpu``: all threads; on a machine shared with other work it does not count the waiting)."""
    ends = run[clock]
    return sum(run["tokens"][warmup : len(ends)]) / (ends[-1] - ends[warmup - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=ROWS)
    ap.add_argument("--small", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads per child (default: torch's own); 1 on a shared CPU: see the module doc",
    )  # fmt: skip
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not 1 <= args.warmup < args.steps:
        raise SystemExit(f"--warmup {args.warmup}: need 1 <= warmup < steps ({args.steps})")
    if args.child:
        results = [
            child(variant, args.work / "model", args.work / "rows.jsonl", args.work / "out", args.steps, args.threads)
            for variant in args.child.split(",")
        ]
        (args.work / "result.json").write_text(json.dumps(results))
        return

    work = args.out or Path(tempfile.mkdtemp(prefix="dpo-packing-"))
    work.mkdir(parents=True, exist_ok=True)
    _, _, params, shape = build_inputs(work, args.small, args.rows)
    print(json.dumps({"model_parameters": params, "data": shape, "batch_pairs": BATCH_PAIRS, "threads": args.threads,
                      "load_average": os.getloadavg()}), flush=True)  # fmt: skip
    speeds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu_speeds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    round_ratios: list[float] = []
    for round_ in range(args.rounds):
        order = list(VARIANTS if round_ % 2 == 0 else reversed(VARIANTS))
        this_round = {}
        for result in run_child(work, order, args.steps, threads=args.threads):
            variant = result["variant"]
            speed = tokens_per_s(result, args.warmup)
            cpu_speed = tokens_per_s(result, args.warmup, "step_end_cpu")
            speeds[variant].append(speed)
            cpu_speeds[variant].append(cpu_speed)
            this_round[variant] = speed
            print(json.dumps({"round": round_, "variant": variant, "real_tokens_per_s": round(speed, 1),
                              "real_tokens_per_cpu_s": round(cpu_speed, 1), "steps": len(result["step_end"]),
                              "load_average": os.getloadavg(), "losses": result["losses"]}), flush=True)  # fmt: skip
        round_ratios.append(this_round["padding_free"] / this_round["padded"])

    med = {v: statistics.median(s) for v, s in speeds.items()}
    cpu_med = {v: statistics.median(s) for v, s in cpu_speeds.items()}
    import torch

    summary = {
        "figure": "dpo_packing",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "rounds": args.rounds,
        "threads": args.threads,
        "measured_steps": args.steps - args.warmup,
        "real_tokens_per_s": {
            v: {"median": round(med[v], 1), "min": round(min(s), 1), "max": round(max(s), 1)} for v, s in speeds.items()
        },  # fmt: skip
        "real_tokens_per_cpu_s": {
            v: {"median": round(cpu_med[v], 1), "min": round(min(s), 1), "max": round(max(s), 1)}
            for v, s in cpu_speeds.items()
        },  # fmt: skip
        "padding_free_vs_padded": round(med["padding_free"] / med["padded"], 2),
        "padding_free_vs_padded_per_round": [round(r, 2) for r in round_ratios],
        "padding_free_vs_padded_cpu": round(cpu_med["padding_free"] / cpu_med["padded"], 2),
        "padding_free_vs_grouped_cpu": round(cpu_med["padding_free"] / cpu_med["grouped"], 2),
        "padding_free_vs_trl_defaults_cpu": round(cpu_med["padding_free"] / cpu_med["trl_defaults"], 2),
        "padding_free_vs_grouped": round(med["padding_free"] / med["grouped"], 2),
        "padding_free_vs_trl_defaults": round(med["padding_free"] / med["trl_defaults"], 2),
        "padded_vs_trl_defaults": round(med["padded"] / med["trl_defaults"], 2),
    }
    summary["goal_packed_met"] = summary["padding_free_vs_padded_cpu"] >= GOAL_PACKED_VS_PADDED
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
