"""The training recipes, run as the node agent runs them: real processes, real torchrun, a real events socket.

Each job trains the tiny Llama from ``trl_nats_agent.testing.tiny`` on CPU. The
expensive runs (DPO on 2 ranks with FSDP2 and on 1 rank) happen once per
module and several tests read them.

Same-math rule for comparing world sizes: 2 ranks x per_device_batch_size 2
and 1 rank x per_device_batch_size 4 see the same 4 pairs per optimizer step
(accelerate deals rank r the r-th 2-pair slice of one seeded permutation, and
the one-rank run takes the same permutation 4 at a time); the DPO loss is a
mean over pairs and FSDP2 averages gradients over ranks, so the two runs
compute the same losses and updates up to float rounding.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from support import REPO, SHIPPED

from trl_nats.messages import DatasetRef, JobKind, JobSpec, LoraParams, TrainingParams, encode
from trl_nats.ports import free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
PROBE = Path(__file__).resolve().parent / "fsdp_shard_probe.py"
RUN_TIMEOUT_S = 600  # a hang guard, not a speed requirement
LOSS_TOLERANCE = 1e-4


# -- data ---------------------------------------------------------------------------

_TOPICS = [
    ("the sun", "a star at the centre of our solar system"),
    ("water", "made of hydrogen and oxygen"),
    ("a spider", "an animal with eight legs"),
    ("the moon", "the only natural satellite of the Earth"),
    ("bread", "baked from flour, water and yeast"),
    ("a violin", "a string instrument played with a bow"),
    ("snow", "frozen water that falls as flakes"),
    ("a library", "a place that lends books"),
    ("Paris", "the capital of France"),
    ("a prime number", "divisible only by one and itself"),
    ("the ocean", "salt water covering most of the Earth"),
    ("a compass", "a tool that points north"),
]


def preference_rows(n: int = 24) -> list[dict]:
    """Conversational prompt/chosen/rejected rows: the chat template path of TRL is exercised too."""
    rows = []
    for i in range(n):
        topic, fact = _TOPICS[i % len(_TOPICS)]
        style = ["Tell me about", "What is", "Describe"][i % 3]
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"{style} {topic}?"}],
                "chosen": [{"role": "assistant", "content": f"{topic.capitalize()} is {fact}."}],
                "rejected": [{"role": "assistant", "content": "I do not know."}],
            }
        )
    return rows


def dpo_rows() -> list[dict]:
    if SHIPPED.is_file():
        rows = [json.loads(line) for line in SHIPPED.read_text().splitlines() if line.strip()]
        return rows[:32]
    return preference_rows()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_spec(path: Path, model: Path, kind: JobKind, rows: int, **params) -> Path:
    ref = DatasetRef(object="sha256-" + "0" * 64, sha256="0" * 64, rows=rows, bytes=0)
    spec = JobSpec(job_id=path.stem, kind=kind, model=str(model), dataset=ref, params=TrainingParams(**params))
    path.write_bytes(encode(spec))
    return path


# -- the events socket (what the node agent's relay would see) ---------------------------


class EventSink:
    """A Unix stream socket server that collects every JSON line any connection writes."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="ev", dir="/tmp")  # Unix socket paths must stay short
        self.path = os.path.join(self._dir, "events.sock")
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as fh:
            for line in fh:
                with self._cond:
                    self.events.append(json.loads(line))
                    self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self.events.clear()

    def wait_for(self, predicate, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def snapshot(self) -> list[dict]:
        with self._cond:
            return list(self.events)

    def close(self) -> None:
        self._server.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def sink():
    s = EventSink()
    yield s
    s.close()


def losses(events: list[dict]) -> dict[int, float]:
    return {e["step"]: e["metrics"]["loss"] for e in events if e["kind"] == "metrics" and "loss" in e["metrics"]}


def checkpoints(events: list[dict], final: bool) -> list[dict]:
    return [e for e in events if e["kind"] == "checkpoint" and e["final"] is final]


# -- running a recipe -------------------------------------------------------------------


def recipe_command(module_or_script: str, nproc: int, args: list[str]) -> list[str]:
    target = ["-m", module_or_script] if not module_or_script.endswith(".py") else [module_or_script]
    if nproc == 1:
        return [sys.executable, *target, *args]
    return [
        str(BIN / "torchrun"),
        f"--nproc_per_node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        *target,
        *args,
    ]


def recipe_env(sink: EventSink | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "agents"), str(REPO), env.get("PYTHONPATH", "")])
    env["TRL_NATS_DEVICE"] = "cpu"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TRL_NATS_EVENTS_SOCKET", None)
    if sink is not None:
        env["TRL_NATS_EVENTS_SOCKET"] = sink.path
    return env


def job_args(spec: Path, dataset: Path, output: Path, resume: bool = False) -> list[str]:
    args = ["--spec", str(spec), "--dataset", str(dataset), "--output", str(output)]
    return args + (["--resume", "auto"] if resume else [])


def run(module: str, nproc: int, args: list[str], sink: EventSink | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        recipe_command(module, nproc, args),
        env=recipe_env(sink),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}"
    )


def load_weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def max_weight_change(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# -- shared, expensive fixtures ----------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recipes")


@pytest.fixture(scope="module")
def tiny_model(workspace: Path) -> Path:
    from trl_nats_agent.testing.tiny import corpus_from_jsonl

    dataset = write_jsonl(workspace / "corpus.jsonl", dpo_rows() + preference_rows())
    out = workspace / "tiny"
    proc = subprocess.run(
        [sys.executable, "-m", "trl_nats_agent.testing.tiny", str(out), "--dataset", str(dataset), "--seed", "0"],
        env=recipe_env(None),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert_ok(proc)
    assert corpus_from_jsonl(dataset)
    return out


class DpoRun:
    def __init__(self, output: Path, events: list[dict], wall_s: float) -> None:
        self.output = output
        self.events = events
        self.wall_s = wall_s


@pytest.fixture(scope="module")
def dpo_job(workspace: Path, tiny_model: Path) -> dict:
    """The DPO job both world sizes run: 2 epochs of 4 pairs per optimizer step, checkpoints every quarter."""
    job = workspace / "dpo"
    job.mkdir()
    rows = dpo_rows()
    assert len(rows) % 4 == 0
    dataset = write_jsonl(job / "dataset.jsonl", rows)
    steps = 2 * len(rows) // 4
    common = dict(learning_rate=5e-4, epochs=2, max_length=128, seed=3, logging_steps=1)
    two = write_spec(job / "dpo2.json", tiny_model, JobKind.dpo, len(rows), per_device_batch_size=2, **common)
    one = write_spec(job / "dpo1.json", tiny_model, JobKind.dpo, len(rows), per_device_batch_size=4, **common)
    every = math.ceil(steps / 4)  # the recipe's default: about 4 checkpoints a run
    return {
        "dir": job,
        "dataset": dataset,
        "spec_2ranks": two,
        "spec_1rank": one,
        "rows": len(rows),
        "steps": steps,
        "checkpoint_steps": list(range(every, steps + 1, every)),
    }


@pytest.fixture(scope="module")
def dpo_two_ranks(dpo_job: dict) -> DpoRun:
    sink = EventSink()
    try:
        output = dpo_job["dir"] / "out2"
        start = time.monotonic()
        proc = run("trl_nats_agent.recipes.dpo", 2, job_args(dpo_job["spec_2ranks"], dpo_job["dataset"], output), sink)
        wall = time.monotonic() - start
        assert_ok(proc)
        sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
        return DpoRun(output, sink.snapshot(), wall)
    finally:
        sink.close()


@pytest.fixture(scope="module")
def dpo_one_rank(dpo_job: dict) -> DpoRun:
    sink = EventSink()
    try:
        output = dpo_job["dir"] / "out1"
        start = time.monotonic()
        proc = run("trl_nats_agent.recipes.dpo", 1, job_args(dpo_job["spec_1rank"], dpo_job["dataset"], output), sink)
        wall = time.monotonic() - start
        assert_ok(proc)
        sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
        return DpoRun(output, sink.snapshot(), wall)
    finally:
        sink.close()


# -- tests ---------------------------------------------------------------------------------


def test_tiny_model_and_tokenizer_reload_with_transformers_and_are_deterministic(tiny_model: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl_nats_agent.testing.tiny import build_tiny_model, corpus_from_jsonl

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "llama"
    assert tokenizer.pad_token and tokenizer.bos_token and tokenizer.eos_token
    assert model.config.vocab_size == len(tokenizer)
    messages = [{"role": "user", "content": "What is water?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "Wet."}], tokenize=False)
    assert full.startswith(prompt) and prompt.endswith("<|assistant|>\n")
    text = "Water is made of hydrogen and oxygen."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text

    # The same corpus and seed, built in-process, give the same tokenizer and weights as the CLI build.
    again = build_tiny_model(tmp_path / "again", corpus_from_jsonl(tiny_model.parent / "corpus.jsonl"), seed=0)
    assert (again / "tokenizer.json").read_text() == (tiny_model / "tokenizer.json").read_text()
    assert max_weight_change(load_weights(again), load_weights(tiny_model)) == 0.0


def test_dpo_fsdp2_on_two_ranks_matches_one_rank(dpo_job: dict, dpo_two_ranks: DpoRun, dpo_one_rank: DpoRun):
    steps = dpo_job["steps"]
    two, one = losses(dpo_two_ranks.events), losses(dpo_one_rank.events)
    assert sorted(two) == list(range(1, steps + 1)), two
    assert sorted(one) == sorted(two)
    diffs = {step: abs(two[step] - one[step]) for step in two}
    print(f"\nDPO losses, 2 ranks FSDP2 vs 1 rank: max |diff| = {max(diffs.values()):.3g}")
    print(f"wall time: 2-rank torchrun job {dpo_two_ranks.wall_s:.1f} s, 1-rank job {dpo_one_rank.wall_s:.1f} s")
    assert max(diffs.values()) < LOSS_TOLERANCE, diffs
    assert two[steps] < two[1], "the DPO loss did not go down"

    # Metrics events carry the DPO reward statistics, as finite floats.
    last = [e for e in dpo_two_ranks.events if e["kind"] == "metrics" and e["step"] == steps and "loss" in e["metrics"]]
    assert last and last[0]["total_steps"] == steps
    for name in ("grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected", "rewards/accuracies"):
        assert name in last[0]["metrics"], name

    # A checkpoint event per checkpoint-N (about 4 per run), then one for the final model.
    for run_ in (dpo_two_ranks, dpo_one_rank):
        saved = [e["step"] for e in checkpoints(run_.events, final=False)]
        assert saved == dpo_job["checkpoint_steps"], saved
        finals = checkpoints(run_.events, final=True)
        assert len(finals) == 1 and finals[0]["path"] == str(run_.output / "final") and finals[0]["step"] == steps
    log_lines = [e["line"] for e in dpo_two_ranks.events if e["kind"] == "log"]
    assert any(f"training {steps} steps" in line for line in log_lines), log_lines
    assert any("held by rank 0 (sharded)" in line for line in log_lines), log_lines


def test_dpo_checkpoints_and_final_model_load_with_transformers(dpo_job: dict, dpo_two_ranks: DpoRun, tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    initial = load_weights(tiny_model)
    for name in (f"checkpoint-{dpo_job['checkpoint_steps'][0]}", "final"):
        path = dpo_two_ranks.output / name
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        assert tokenizer.chat_template and len(tokenizer) == model.config.vocab_size
        assert max_weight_change(load_weights(path), initial) > 1e-4, f"{name} equals the initial model"
    # The FSDP2 run's final weights are the one-rank run's, up to float rounding.
    one_final = load_weights(dpo_two_ranks.output.parent / "out1" / "final")
    assert max_weight_change(load_weights(dpo_two_ranks.output / "final"), one_final) < 1e-4


def test_fsdp2_really_shards_policy_and_reference_on_cpu(dpo_job: dict, tmp_path: Path):
    spec = write_spec(
        tmp_path / "probe.json", Path(json.loads(dpo_job["spec_2ranks"].read_text())["model"]), JobKind.dpo,
        dpo_job["rows"], per_device_batch_size=2, max_steps=1, max_length=128,
    )  # fmt: skip
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    proc = run(str(PROBE), 2, [str(probe_dir), *job_args(spec, dpo_job["dataset"], tmp_path / "out")], None)
    assert_ok(proc)
    reports = [json.loads((probe_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    for which in ("policy", "reference"):
        total = sum(p["global"] for p in reports[0][which])
        per_rank = [sum(p["local"] for p in rep[which]) for rep in reports]
        assert all(p["dtensor"] for rep in reports for p in rep[which]), f"{which}: some parameters are not DTensors"
        assert sum(per_rank) == total, (which, per_rank, total)
        for local in per_rank:
            assert abs(local - total / 2) <= 0.05 * total, f"{which}: rank holds {local} of {total} elements"


def test_resume_auto_after_kill_finishes_the_same_steps_with_the_same_losses(
    dpo_job: dict, dpo_two_ranks: DpoRun, sink: EventSink
):
    output = dpo_job["dir"] / "resumed"
    cmd = recipe_command(
        "trl_nats_agent.recipes.dpo", 2, job_args(dpo_job["spec_2ranks"], dpo_job["dataset"], output, resume=True)
    )
    proc = subprocess.Popen(cmd, env=recipe_env(sink), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        first = sink.wait_for(lambda e: e["kind"] == "checkpoint", timeout=RUN_TIMEOUT_S)
        assert first is not None, "no checkpoint event before the timeout"
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, mid-training
    finally:
        proc.wait(timeout=60)
    assert not (output / "final").exists(), "the job finished before it could be killed: make it longer"
    steps = dpo_job["steps"]
    killed_at = max(e["step"] for e in sink.snapshot() if e["kind"] == "metrics")
    assert killed_at < steps

    sink.clear()
    resumed = run(
        "trl_nats_agent.recipes.dpo", 2, job_args(dpo_job["spec_2ranks"], dpo_job["dataset"], output, True), sink
    )
    assert_ok(resumed)
    sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
    events = sink.snapshot()
    log_lines = [e["line"] for e in events if e["kind"] == "log"]
    assert any("resuming from" in line and "checkpoint-" in line for line in log_lines), log_lines

    after = losses(events)
    start = min(after)
    assert start > first["step"] and start - 1 in dpo_job["checkpoint_steps"][:-1], f"resumed at step {start}"
    assert max(after) == steps
    final = checkpoints(events, final=True)
    assert final and final[0]["step"] == steps
    uninterrupted = losses(dpo_two_ranks.events)
    for step, loss in after.items():
        assert abs(loss - uninterrupted[step]) < LOSS_TOLERANCE, (step, loss, uninterrupted[step])
    state = json.loads((output / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == steps


def test_every_training_param_reaches_the_trl_config(tiny_model: Path, tmp_path: Path, sink: EventSink):
    import torch

    train_rows = write_jsonl(tmp_path / "train.jsonl", preference_rows(24))  # conversational: the chat template path
    eval_rows = write_jsonl(tmp_path / "eval.jsonl", preference_rows(4))
    params = dict(
        beta=0.2, loss_type="ipo", learning_rate=1e-3, lr_scheduler="cosine", warmup_steps=2, weight_decay=0.1,
        optimizer="adam", max_steps=5, per_device_batch_size=2, gradient_accumulation_steps=2, max_length=96,
        dtype="bfloat16", activation_checkpointing=True, shuffle=False, seed=7, save_steps=2, save_total_limit=1,
        logging_steps=2, precompute_ref=True, liger=True,
    )  # fmt: skip
    spec = write_spec(tmp_path / "all.json", tiny_model, JobKind.dpo, 24, **params)
    output = tmp_path / "out"
    args = job_args(spec, train_rows, output) + ["--eval-dataset", str(eval_rows)]
    assert_ok(run("trl_nats_agent.recipes.dpo", 1, args, sink))
    assert sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)

    config = torch.load(output / "final" / "training_args.bin", weights_only=False)
    assert (config.beta, config.loss_type, config.learning_rate) == (0.2, ["ipo"], 1e-3)
    assert (config.lr_scheduler_type.value, config.warmup_steps, config.weight_decay) == ("cosine", 2, 0.1)
    assert (config.max_steps, config.per_device_train_batch_size, config.gradient_accumulation_steps) == (5, 2, 2)
    assert (config.max_length, config.seed, config.data_seed) == (96, 7, 7)
    assert config.train_sampling_strategy == "sequential"
    assert (config.save_steps, config.save_total_limit, config.logging_steps) == (2, 1, 2)
    assert config.activation_checkpointing and config.precompute_ref_log_probs
    assert config.use_cpu and not config.bf16 and not config.use_liger_kernel  # CPU: float32, no liger
    assert config.eval_strategy.value == "steps"
    # "adam" is torch.optim.Adam: weight decay coupled into the gradient, not AdamW's decoupled decay.
    checkpoints_left = sorted(p.name for p in output.glob("checkpoint-*"))
    assert checkpoints_left == ["checkpoint-5"], checkpoints_left  # save_total_limit=1
    group = torch.load(output / "checkpoint-5" / "optimizer.pt", weights_only=False)["param_groups"][0]
    assert group["decoupled_weight_decay"] is False and "betas" in group

    events = sink.snapshot()
    assert sorted(losses(events)) == [2, 4]
    assert any(e["kind"] == "metrics" and "eval_loss" in e["metrics"] for e in events)
    warnings = [e["line"] for e in events if e["kind"] == "log" and e["level"] == "warning"]
    assert any("bfloat16" in line for line in warnings), warnings
    assert any("liger" in e["line"] for e in events if e["kind"] == "log")


def test_sft_full_fine_tune_and_lora(tiny_model: Path, tmp_path: Path, sink: EventSink):
    from transformers import AutoModelForCausalLM

    initial = load_weights(tiny_model)
    plain = write_jsonl(
        tmp_path / "plain.jsonl",
        [{"prompt": f"What is {i} plus {i}?", "completion": f" It is {2 * i}."} for i in range(12)],
    )
    chats = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": f"{w}!"}]}
            for w in ["hello", "water", "snow", "bread", "moon", "paris", "sun", "violin"]
        ],
    )
    jobs = {
        "full": (plain, write_spec(tmp_path / "sft.json", tiny_model, JobKind.sft, 12, learning_rate=1e-3, max_length=64)),
        "lora": (
            chats,
            write_spec(tmp_path / "lora.json", tiny_model, JobKind.sft, 8, learning_rate=1e-2, max_length=64,
                       lora=LoraParams(rank=4, alpha=8.0, dropout=0.0)),
        ),
    }  # fmt: skip
    for name, (dataset, spec) in jobs.items():
        sink.clear()
        output = tmp_path / f"out-{name}"
        assert_ok(run("trl_nats_agent.recipes.sft", 1, job_args(spec, dataset, output), sink))
        assert sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
        assert losses(sink.snapshot()), f"{name}: no loss metrics"
        AutoModelForCausalLM.from_pretrained(output / "final")
        assert max_weight_change(load_weights(output / "final"), initial) > 1e-5, f"{name}: final equals initial"
    assert (tmp_path / "out-lora" / "final_adapter" / "adapter_config.json").is_file()


def test_bad_dataset_row_fails_with_row_and_field(tiny_model: Path, tmp_path: Path, sink: EventSink):
    rows = preference_rows(6)
    del rows[2]["rejected"]
    dataset = write_jsonl(tmp_path / "bad.jsonl", rows)
    spec = write_spec(tmp_path / "bad.json", tiny_model, JobKind.dpo, len(rows))
    proc = run("trl_nats_agent.recipes.dpo", 1, job_args(spec, dataset, tmp_path / "out"), sink)
    assert proc.returncode != 0
    assert re.search(r"row 3\b.*'rejected'", proc.stderr), proc.stderr[-3000:]
    error = sink.wait_for(lambda e: e["kind"] == "log" and e["level"] == "error", timeout=30)
    assert error is not None and "row 3" in error["line"]
    assert not (tmp_path / "out" / "final").exists()


def test_emitter_without_a_reader_drops_instead_of_blocking():
    from trl_nats_agent.recipes.events import EventEmitter

    assert not EventEmitter(None).enabled
    EventEmitter(None).log("nowhere")  # no socket: a no-op

    gone = EventEmitter("/tmp/no-such-dir-for-trl-nats/events.sock")
    for i in range(100):
        gone.metrics(i, 100, 0.0, {"loss": 1.0})
    gone.close(timeout=2)
    assert gone.dropped > 0

    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(os.path.join(d, "s.sock"))
        server.listen(1)  # accepts the connection in the backlog, never reads
        stuck = EventEmitter(os.path.join(d, "s.sock"), queue_size=100)
        for i in range(20_000):
            stuck.metrics(i, None, 0.0, {"loss": float(i), "nan": float("nan"), "flag": True})
        assert stuck.dropped > 0
        stuck.close(timeout=1)
        server.close()
