"""The recipe's automatic performance choices keep training correct, and the work they save stays saved.

(The rules themselves are unit-tested in test_performance_plan.py.)

- Correctness on CPU, tiny model, real recipe processes: with the reference precomputed the per-step
  losses equal the live-reference run's (``PRECOMPUTED_TOLERANCE``); read back from the cache they are
  bit-identical to the run that computed them; with activation checkpointing they stay within
  ``SETTINGS_TOLERANCE``. bf16 and liger need a GPU: ``test_gpu_defaults_track_float32_live_reference``
  runs only where there is one (and ``benchmarks/gpu_dpo.py`` compares every step against plain TRL).
- Work done once: on 2 ranks only rank 0 tokenizes; a second attempt tokenizes nothing and runs no
  reference forward; through a real agent, a retried attempt reads the reference log-probs from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, AgentProcess
from test_recipe import (
    RUN_TIMEOUT_S,
    EventSink,
    assert_ok,
    dpo_rows,
    job_args,
    losses,
    recipe_command,
    recipe_env,
    write_jsonl,
    write_spec,
)

from trl_nats.messages import JobKind, TrainingParams

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent
WORK_PROBE = TESTS / "dataset_work_probe.py"
DPO = "trl_nats_agent.recipes.dpo"

# Same numbers, same order of float operations except where the reference's batch padding differs.
PRECOMPUTED_TOLERANCE = 1e-6
# Recomputing activations in the backward pass reorders no reduction that matters in float32.
SETTINGS_TOLERANCE = 1e-5
# bf16 autocast and fused kernels against float32: a loss near log(2) moves in the third decimal.
GPU_TOLERANCE = 2e-2
# -- correctness on CPU: real recipe runs ------------------------------------------------------


def _env(sink: EventSink | None, cache: Path, **extra: str) -> dict[str, str]:
    env = recipe_env(sink)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env["PYTHONPATH"]])
    env["TRL_NATS_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def _run(target: str, nproc: int, args: list[str], sink: EventSink | None, cache: Path) -> None:
    proc = subprocess.run(
        recipe_command(target, nproc, args), env=_env(sink, cache), cwd=REPO, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert_ok(proc)


def _log_lines(events: list[dict]) -> list[str]:
    return [e["line"] for e in events if e["kind"] == "log"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("performance")


@pytest.fixture(scope="module")
def tiny_model(workspace: Path) -> Path:
    rows = write_jsonl(workspace / "corpus.jsonl", dpo_rows())
    out = workspace / "tiny"
    proc = subprocess.run(
        [sys.executable, "-m", "trl_nats_agent.testing.tiny", str(out), "--dataset", str(rows), "--seed", "0"],
        env=recipe_env(None), capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert_ok(proc)
    return out


@pytest.fixture(scope="module")
def runs(workspace: Path, tiny_model: Path) -> dict[str, list[dict]]:
    """One tiny DPO job (8 steps of 4 pairs: the whole dataset) run with each setting; name -> events."""
    rows = dpo_rows()
    dataset = write_jsonl(workspace / "dataset.jsonl", rows)
    common = dict(max_steps=8, per_device_batch_size=4, learning_rate=5e-4, max_length=128, seed=3, save_steps=100)
    variants = {
        "live": dict(precompute_ref=False),
        "precomputed": {},  # the recipe's own choice: the run covers the dataset, so precomputed
        "cached": {},  # the same, again: the log-probs come from the cache the run before filled
        "checkpointed": dict(activation_checkpointing=True, precompute_ref=False),
    }
    cache = workspace / "cache"
    out: dict[str, list[dict]] = {}
    for name, params in variants.items():
        spec = write_spec(workspace / f"{name}.json", tiny_model, JobKind.dpo, len(rows), **common, **params)
        sink = EventSink()
        try:
            _run(DPO, 1, job_args(spec, dataset, workspace / f"out-{name}"), sink, cache)
            sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
            out[name] = sink.snapshot()
        finally:
            sink.close()
    return out


def _max_diff(a: dict[int, float], b: dict[int, float]) -> float:
    assert sorted(a) == sorted(b) == list(range(1, 9)), (a, b)
    return max(abs(a[s] - b[s]) for s in a)


def test_precomputed_reference_gives_the_live_reference_losses(runs):
    lines = _log_lines(runs["precomputed"])
    assert any("precomputed reference log-probs on" in line for line in lines), lines
    assert any("pairs computed in" in line for line in lines), lines
    assert any("precomputed reference log-probs off: set in the job spec" in line for line in _log_lines(runs["live"]))
    live, pre = losses(runs["live"]), losses(runs["precomputed"])
    worst = _max_diff(live, pre)
    print(f"\nper-step loss, precomputed vs live reference: max |diff| = {worst:.3g}")
    assert worst < PRECOMPUTED_TOLERANCE, (live, pre)
    assert live[8] < live[1], "the DPO loss did not go down: the comparison would prove little"


def test_cached_reference_log_probs_give_identical_losses(runs):
    assert any("pairs read from" in line for line in _log_lines(runs["cached"])), _log_lines(runs["cached"])
    assert losses(runs["cached"]) == losses(runs["precomputed"])


def test_activation_checkpointing_stays_within_tolerance(runs):
    assert any("activation checkpointing on: set in the job spec" in line for line in _log_lines(runs["checkpointed"]))
    assert any("activation checkpointing off: estimated peak" in line for line in _log_lines(runs["live"]))
    worst = _max_diff(losses(runs["live"]), losses(runs["checkpointed"]))
    print(f"\nper-step loss, activation checkpointing on vs off: max |diff| = {worst:.3g}")
    assert worst < SETTINGS_TOLERANCE


# -- work done once ---------------------------------------------------------------------------


def _reports(probe_dir: Path, ranks: int) -> list[dict]:
    return [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in range(ranks)]


def _tokenized(report: dict) -> int:
    return sum(m["rows"] for m in report["mapped"] if m["function"] == "tokenize_fn")


def test_two_ranks_tokenize_once_and_a_second_attempt_redoes_nothing(workspace: Path, tiny_model: Path):
    rows = dpo_rows()
    dataset = write_jsonl(workspace / "ranks.jsonl", rows)
    spec = write_spec(
        workspace / "ranks.json", tiny_model, JobKind.dpo, len(rows), epochs=1, per_device_batch_size=2,
        learning_rate=5e-4, max_length=128, save_steps=100,
    )  # fmt: skip
    output, cache = workspace / "out-ranks", workspace / "cache-ranks"
    first, second = workspace / "probe-1", workspace / "probe-2"
    for probe in (first, second):  # the second run is what a retried attempt does: same output dir and cache
        probe.mkdir()
        _run(str(WORK_PROBE), 2, [str(probe), *job_args(spec, dataset, output)], None, cache)

    rank0, rank1 = _reports(first, 2)
    assert _tokenized(rank0) == len(rows), rank0["mapped"]
    assert _tokenized(rank1) == 0, f"rank 1 tokenized by itself: {rank1['mapped']}"
    # the reference ran once over the dataset, its batches split between the ranks
    assert rank0["reference_batches"] > 0 and rank1["reference_batches"] > 0
    assert rank0["reference_batches"] + rank1["reference_batches"] == len(rows) // 2

    for report in _reports(second, 2):
        assert _tokenized(report) == 0, report["mapped"]
        assert report["reference_batches"] == 0, report
    assert len(list((cache / "ref_logps").glob("*.safetensors"))) == 1


async def test_a_retried_attempt_reads_the_reference_log_probs_from_the_agent_cache(
    settings, env_for, tmp_path: Path, tiny_model: Path
):
    from trl_nats.client import Client
    from trl_nats.messages import JobSpec, JobState, LogEvent

    env = env_for(
        PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO / "agents"), str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    agent = AgentProcess(
        env, tmp_path / "agent", slots=1, agent_id="retry-node", extra=["--recipe-override", "retry_probe"]
    )
    client = await Client.connect(settings)
    try:
        spec = JobSpec(
            job_id="retry-ref",
            model=str(tiny_model),
            dataset=await client.upload_dataset(dpo_rows()),
            params=TrainingParams(max_steps=4, per_device_batch_size=4, learning_rate=5e-4, max_length=128),
            max_attempts=2,
        )
        job = await client.submit(spec)
        record = await job.wait(timeout=RUN_TIMEOUT_S)
        events = [e async for e in job.events()]
    finally:
        await client.close()
        agent.stop()
    assert record.state is JobState.completed and record.attempt == 2, (record.state, record.error, agent.log()[-3000:])
    probe = {e.attempt: e.line for e in events if isinstance(e, LogEvent) and e.line.startswith("probe:")}
    assert probe[1] != "probe: 0 reference batches in setup", probe
    assert probe[2] == "probe: 0 reference batches in setup", probe
    read = [e for e in events if isinstance(e, LogEvent) and "pairs read from" in e.line]
    assert [e.attempt for e in read] == [2]
    assert str(tmp_path / "agent" / "cache" / "ref_logps") in read[0].line


# -- GPU only ---------------------------------------------------------------------------------


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="bf16 and liger kernels need a CUDA GPU")
def test_gpu_defaults_track_float32_live_reference(workspace: Path, tiny_model: Path):
    rows = dpo_rows()
    dataset = write_jsonl(workspace / "gpu.jsonl", rows)
    common = dict(max_steps=8, per_device_batch_size=4, learning_rate=5e-4, max_length=128, seed=3, save_steps=100)
    results = {}
    for name, params in {"auto": {}, "fp32": dict(dtype="float32", precompute_ref=False, liger=False)}.items():
        spec = write_spec(workspace / f"gpu-{name}.json", tiny_model, JobKind.dpo, len(rows), **common, **params)
        sink = EventSink()
        try:
            env = _env(sink, workspace / "gpu-cache", TRL_NATS_DEVICE="cuda")
            env.pop("CUDA_VISIBLE_DEVICES", None)
            proc = subprocess.run(
                recipe_command(DPO, 1, job_args(spec, dataset, workspace / f"gpu-out-{name}")), env=env, cwd=REPO,
                capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
            )  # fmt: skip
            assert_ok(proc)
            sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
            results[name] = losses(sink.snapshot())
        finally:
            sink.close()
    assert _max_diff(results["auto"], results["fp32"]) < GPU_TOLERANCE


# -- the benchmark ------------------------------------------------------------------------------


def test_gpu_benchmark_runs_on_cpu_with_the_tiny_model(tmp_path: Path):
    """benchmarks/gpu_dpo.py --tiny: plain TRL and a job through a real agent train the same steps to the same
    losses (float32 on CPU: TRL's live reference and checkpointing against our precomputed reference)."""
    env = recipe_env(None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_dpo.py"), "--tiny", "--out", str(tmp_path)], env=env,
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert_ok(proc)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    base, ours, summary = lines[-3], lines[-2], lines[-1]
    assert (base["side"], ours["side"], summary["figure"]) == ("trl_defaults", "trl_nats", "gpu_dpo")
    assert base["flops_per_token"] == "8N" and ours["flops_per_token"] == "6N"
    assert len(base["losses"]) == len(ours["losses"]) == 6
    assert summary["max_step_loss_diff"] < PRECOMPUTED_TOLERANCE, (base["losses"], ours["losses"])
    assert summary["tokens_per_s_trl_defaults"] > 0 and summary["tokens_per_s_trl_nats"] > 0
    assert summary["goal_met"] is None  # CPU figures never count for the GPU goal
