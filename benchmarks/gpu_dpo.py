"""Plain TRL against our recipe through a real agent: same machine, model, data and steps, one process tree.

    python benchmarks/gpu_dpo.py [--tiny] [--steps N] [--rounds R] [--out DIR] [--peak-tflops T]

Side "trl_defaults": TRL's DPOTrainer with its defaults, exactly as shared/bench/trl_dpo_baseline.py's
``trl_defaults`` variant runs it (bf16, gradient checkpointing on, a live reference model), in a child
process. Side "trl_nats": the same job submitted with the client to a real nats-server and a real node
agent, which runs the DPO recipe under torchrun with the settings the recipe picks for itself (see
docs/performance.md); ``benchmarks/timed_dpo.py`` adds the same step clock from outside. With
``--rounds R`` the sides alternate R times and the figures are medians over rounds.

Model, data and counting are the baseline's: a random-init Llama of 1.10 B parameters (hidden 2048, 16
layers, vocab 32000; ``--tiny``: hidden 64, 2 layers, vocab 2000), a word-level tokenizer, random
"w<i>" words, batch 8 pairs of 256 + 256 tokens (``--tiny``: 2 pairs of 16 + 16), 30 steps of which the
first 8 are warm-up (``--tiny``: 6 and 2). Tokens per step = batch x 2 x (prompt + completion), chosen and
rejected. Step time = mean over the steps after warm-up, as the baseline computes it (the median is
printed too).

Printed per side, one JSON line: tokens/s, MFU, peak memory, time from submission to the first step
(trl_defaults: from starting its process; trl_nats: from uploading the dataset, so it includes the
claim, torchrun, imports, model load, tokenization and the reference precompute), and every step's loss.
MFU = tokens/s x flops per token / peak, flops per token = 8 N with a live reference (6 N for the
policy's forward and backward, 2 N for the reference forward) and 6 N with precomputed reference
log-probs, N = all parameters, embeddings included; recomputation under checkpointing is not counted.
Peak: 989 TFLOP/s, the dense bf16 figure of an H100/H200 SXM (``--peak-tflops`` for another device;
none on CPU). Then one summary line: the speed-up, the largest per-step loss difference, and whether
the goal (>= 1.9x tokens/s and >= 50% MFU on one H100/H200) is met; only GPU figures count for it.

On a GPU machine without trl/datasets/nats, ``benchmarks/gpu_run.sh`` installs carried wheels and runs
this (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
GIB = 1 << 30
DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}
GOAL_SPEEDUP, GOAL_MFU = 1.9, 0.50


class Shape:
    """The baseline's constants (shared/bench/trl_dpo_baseline.py), full size or tiny."""

    def __init__(self, tiny: bool, steps: int | None, warmup: int | None) -> None:
        self.tiny = tiny
        self.vocab = 2000 if tiny else 32000
        self.prompt, self.completion = (16, 16) if tiny else (256, 256)
        self.batch = 2 if tiny else 8
        self.steps = steps or (6 if tiny else 30)
        self.warmup = warmup if warmup is not None else (2 if tiny else 8)
        if self.steps < self.warmup + 2:
            raise SystemExit(f"--steps {self.steps}: need at least warm-up ({self.warmup}) + 2 steps")

    @property
    def max_length(self) -> int:
        return self.prompt + self.completion + 8

    @property
    def tokens_per_step(self) -> int:
        return self.batch * 2 * (self.prompt + self.completion)


# -- model and data, as the baseline builds them -----------------------------------------------


def build_inputs(work: Path, shape: Shape) -> tuple[Path, Path, int]:
    """Write the model+tokenizer directory and the rows; return (model dir, rows.jsonl, parameters)."""
    import torch

    rng = random.Random(0)
    model_dir = work / "model"
    words, vocab_size = save_word_tokenizer(model_dir, shape.vocab - 8)
    if shape.tiny:
        config = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=1024)  # fmt: skip
    else:
        config = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, max_position_embeddings=2048)  # fmt: skip
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    params = save_random_llama(model_dir, dtype=dtype, vocab_size=vocab_size, **config)

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    rows = [
        {"prompt": text(shape.prompt), "chosen": text(shape.completion), "rejected": text(shape.completion)}
        for _ in range(shape.batch * (shape.steps + 4))
    ]
    rows_path = work / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model_dir, rows_path, params


# -- side 1: plain TRL, in a child process (this file with --baseline-child) ----------------------


def baseline_child(model_dir: Path, rows_path: Path, out_json: Path, shape: Shape) -> None:
    import torch
    from datasets import Dataset
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    cuda = torch.cuda.is_available()
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    ds = Dataset.from_list(rows)
    hf_tok = PreTrainedTokenizerFast.from_pretrained(model_dir)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.t: list[float] = []
            self.wall: list[float] = []
            self.losses: dict[int, float] = {}

        def on_step_end(self, args, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.t.append(time.perf_counter())
            self.wall.append(time.time())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses[state.global_step] = float(logs["loss"])

    args = dict(output_dir=str(out_json.parent / "trl_defaults"), max_steps=shape.steps,
                per_device_train_batch_size=shape.batch, learning_rate=1e-6, beta=0.1, max_length=shape.max_length,
                logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                dataloader_num_workers=0)  # fmt: skip
    if not cuda:
        args.update(use_cpu=True, bf16=False)
    clock = Clock()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    trainer = DPOTrainer(model=model, args=DPOConfig(**args), train_dataset=ds, processing_class=hf_tok,
                         callbacks=[clock])  # fmt: skip
    trainer.train()
    import resource

    out_json.write_text(
        json.dumps(
            {
                "perf_counter": clock.t,
                "wall": clock.wall,
                "losses": clock.losses,
                "peak_mem_bytes": torch.cuda.max_memory_allocated() if cuda else None,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "precompute_ref": bool(trainer.precompute_ref_logps),
                "gradient_checkpointing": bool(trainer.args.gradient_checkpointing),
                "device": torch.cuda.get_device_name() if cuda else "cpu",
            }
        )
    )


def run_baseline(work: Path, model_dir: Path, rows_path: Path, shape: Shape, tag: str) -> dict:
    out = work / f"baseline-{tag}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--baseline-child", str(model_dir), str(rows_path),
           str(out), "--steps", str(shape.steps), "--warmup", str(shape.warmup)] + (["--tiny"] if shape.tiny else [])  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env.setdefault("CUDA_VISIBLE_DEVICES", "0")
    log = work / f"baseline-{tag}.log"
    launched = time.time()
    with open(log, "wb") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"plain TRL run failed ({proc.returncode}):\n{log.read_text()[-4000:]}")
    stats = json.loads(out.read_text())
    stats["start"] = launched
    stats["losses"] = {int(k): v for k, v in stats["losses"].items()}
    return stats


# -- side 2: our recipe, through a real nats-server and agent -------------------------------------


def start_agent(work: Path, url: str, cuda: bool, stats_out: Path, tag: str) -> subprocess.Popen:
    """A fresh agent state dir each round: every round starts with an empty reference log-prob cache."""
    path = [str(HERE), str(REPO), str(REPO / "agents"), os.environ.get("PYTHONPATH", "")]
    env = dict(
        os.environ,
        TRL_NATS_SERVERS=url,
        PYTHONPATH=os.pathsep.join(p for p in path if p),
        PYTHONUNBUFFERED="1",
        STEP_STATS_OUT=str(stats_out),
    )
    cmd = [sys.executable, "-m", "trl_nats_agent", "--state-dir", str(work / f"agent-{tag}"), "--agent-id", "bench",
           "--recipe-override", "timed_dpo", "--log-level", "WARNING"]  # fmt: skip
    cmd += ["--device", "cuda", "--gpus", "0"] if cuda else ["--device", "cpu", "--slots", "1"]
    log = open(work / "agent.log", "ab")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


async def submit_job(url: str, model_dir: Path, rows_path: Path, shape: Shape, tag: str) -> dict:
    from trl_nats.client import Client
    from trl_nats.messages import JobSpec, JobState, LogEvent, MetricsEvent, TrainingParams
    from trl_nats.settings import NatsSettings

    client = await Client.connect(NatsSettings(servers=[url]))
    try:
        while not await client.list_agents():
            await asyncio.sleep(0.2)
        rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
        start = time.time()
        spec = JobSpec(
            job_id=f"gpu-dpo-{tag}",
            model=str(model_dir),
            dataset=await client.upload_dataset(rows),
            # The baseline's hyperparameters; TRL's defaults for the rest (seed 42, linear schedule, no warm-up,
            # no weight decay, AdamW). One checkpoint, after the last step, outside the clock.
            params=TrainingParams(
                max_steps=shape.steps,
                per_device_batch_size=shape.batch,
                learning_rate=1e-6,
                beta=0.1,
                max_length=shape.max_length,
                logging_steps=1,
                save_steps=shape.steps,
                save_total_limit=1,
                seed=42,
            ),
            max_attempts=1,
        )
        job = await client.submit(spec)
        record = await job.wait(timeout=3600)
        events = [e async for e in job.events()]
    finally:
        await client.close()
    if record.state is not JobState.completed:
        raise RuntimeError(f"job {spec.job_id} ended {record.state.value}: {record.error}")
    return {
        "start": start,
        "losses": {e.step: e.metrics["loss"] for e in events if isinstance(e, MetricsEvent) and "loss" in e.metrics},
        "plan": [e.line for e in events if isinstance(e, LogEvent) and e.line.startswith("performance:")],
    }


def run_ours(work: Path, url: str, model_dir: Path, rows_path: Path, shape: Shape, cuda: bool, tag: str) -> dict:
    stats_out = work / f"ours-{tag}.json"
    agent = start_agent(work, url, cuda, stats_out, tag)
    try:
        result = asyncio.run(submit_job(url, model_dir, rows_path, shape, tag))
    finally:
        agent.terminate()
        agent.wait(60)
    stats = json.loads(stats_out.read_text())
    stats.update(result)
    return stats


# -- figures ----------------------------------------------------------------------------------------


def figures(side: str, stats: dict, shape: Shape, params: int, peak_tflops: float | None) -> dict:
    steps = stats["perf_counter"][shape.warmup :]
    intervals = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    mean_step = (steps[-1] - steps[0]) / (len(steps) - 1)
    flops_per_token = (6 if stats["precompute_ref"] else 8) * params
    tps = shape.tokens_per_step / mean_step
    peak = stats.get("peak_mem_bytes")
    return {
        "side": side,
        "device": stats["device"],
        "params": params,
        "batch_pairs": shape.batch,
        "seq": shape.prompt + shape.completion,
        "steps": shape.steps,
        "warmup_steps": shape.warmup,
        "step_s": round(mean_step, 5),
        "step_s_median": round(statistics.median(intervals), 5),
        "tokens_per_s": round(tps, 1),
        "tokens_per_s_median": round(shape.tokens_per_step / statistics.median(intervals), 1),
        "flops_per_token": f"{6 if stats['precompute_ref'] else 8}N",
        "mfu": round(tps * flops_per_token / (peak_tflops * 1e12), 4) if peak_tflops else None,
        "peak_mem_gib": round(peak / GIB, 2) if peak is not None else None,
        "peak_rss_gib": round(stats["peak_rss_bytes"] / GIB, 2),
        "submit_to_first_step_s": round(stats["wall"][0] - stats["start"], 2),
        "losses": [round(stats["losses"][s], 6) for s in sorted(stats["losses"])],
        **({"plan": stats["plan"]} if "plan" in stats else {}),
    }


def peak_for(device: str, override: float | None) -> float | None:
    if override:
        return override
    return next((v for k, v in DENSE_BF16_TFLOPS.items() if k in device), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the baseline's tiny model and sizes (runs on CPU)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the baseline's)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (default: the baseline's)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two sides this many times; report medians")
    ap.add_argument("--out", type=Path, default=None, help="working directory (default: a new temporary one)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: 989 on H100/H200)")
    ap.add_argument("--baseline-child", nargs=3, metavar=("MODEL", "ROWS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = Shape(args.tiny, args.steps, args.warmup)
    if args.baseline_child:
        model_dir, rows_path, out = map(Path, args.baseline_child)
        baseline_child(model_dir, rows_path, out, shape)
        return

    import importlib.metadata as md

    import torch

    from trl_nats.server import EmbeddedNats

    cuda = torch.cuda.is_available()
    work = args.out or Path(tempfile.mkdtemp(prefix="gpu-dpo-"))
    work.mkdir(parents=True, exist_ok=True)
    versions = {k: md.version(k) for k in ["torch", "transformers", "trl", "accelerate", "datasets"]}
    try:
        versions["liger-kernel"] = md.version("liger-kernel")
    except md.PackageNotFoundError:
        versions["liger-kernel"] = None
    print(json.dumps({"versions": versions, "cuda": cuda, "work": str(work)}), flush=True)
    model_dir, rows_path, params = build_inputs(work, shape)

    per_round: dict[str, list[dict]] = {"trl_defaults": [], "trl_nats": []}
    with EmbeddedNats(work / "nats") as server:
        for r in range(args.rounds):
            base = run_baseline(work, model_dir, rows_path, shape, str(r))
            peak = peak_for(base["device"], args.peak_tflops)
            per_round["trl_defaults"].append(figures("trl_defaults", base, shape, params, peak))
            print(json.dumps({"round": r, **per_round["trl_defaults"][-1]}), flush=True)
            ours = run_ours(work, server.url, model_dir, rows_path, shape, cuda, str(r))
            per_round["trl_nats"].append(figures("trl_nats", ours, shape, params, peak))
            print(json.dumps({"round": r, **per_round["trl_nats"][-1]}), flush=True)

    base, ours = per_round["trl_defaults"], per_round["trl_nats"]
    med = {side: statistics.median(f["tokens_per_s"] for f in rows) for side, rows in per_round.items()}
    # per-interval medians: the robust figure where other work shares the machine (CPU runs)
    robust = {side: statistics.median(f["tokens_per_s_median"] for f in rows) for side, rows in per_round.items()}
    mfu = statistics.median(f["mfu"] for f in ours) if ours[0]["mfu"] is not None else None
    speedup = med["trl_nats"] / med["trl_defaults"]
    loss_diff = max(abs(a - b) for a, b in zip(base[0]["losses"], ours[0]["losses"], strict=True))
    device = ours[0]["device"]
    counts = cuda and any(k in device for k in DENSE_BF16_TFLOPS)
    summary = {
        "figure": "gpu_dpo",
        "device": device,
        "rounds": args.rounds,
        "tokens_per_s_trl_defaults": round(med["trl_defaults"]),
        "tokens_per_s_trl_nats": round(med["trl_nats"]),
        "speedup": round(speedup, 3),
        "tokens_per_s_median_trl_defaults": round(robust["trl_defaults"]),
        "tokens_per_s_median_trl_nats": round(robust["trl_nats"]),
        "speedup_median": round(robust["trl_nats"] / robust["trl_defaults"], 3),
        "mfu_trl_nats": mfu,
        "mfu_trl_defaults": statistics.median(f["mfu"] for f in base) if base[0]["mfu"] is not None else None,
        "peak_tflops": peak_for(device, args.peak_tflops),
        "submit_to_first_step_s_trl_defaults": statistics.median(f["submit_to_first_step_s"] for f in base),
        "submit_to_first_step_s_trl_nats": statistics.median(f["submit_to_first_step_s"] for f in ours),
        "peak_mem_gib_trl_defaults": base[0]["peak_mem_gib"],
        "peak_mem_gib_trl_nats": ours[0]["peak_mem_gib"],
        "max_step_loss_diff": round(loss_diff, 6),
        "goal": f">= {GOAL_SPEEDUP}x tokens/s and >= {GOAL_MFU:.0%} MFU on one H100/H200",
        "goal_met": (speedup >= GOAL_SPEEDUP and mfu is not None and mfu >= GOAL_MFU) if counts else None,
        "note": None if counts else "not an H100/H200: these figures do not count for the goal",
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
