"""The DPO recipe's long-row budget, failure classes, padding-free batches on 2 ranks and LoRA, run as the
agent runs it: real processes, real torchrun with FSDP2 on 2 CPU ranks, a real events socket.

(The per-batch numerics of packing and LoRA are proven in one process in test_packing.py and
test_lora_dpo.py; these are their recipe-level twins.)
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from test_recipe import EventSink, assert_ok, job_args, losses, run, write_jsonl, write_spec

from trl_nats.messages import JobKind, LoraParams

pytestmark = pytest.mark.integration

DPO = "trl_nats_agent.recipes.dpo"
SHIPPED = Path(__file__).resolve().parent.parent / "trl_nats" / "data" / "preferences.jsonl"
EXIT_BAD_JOB = 2
PACKED_TOLERANCE = 1e-5


@pytest.fixture
def sink():
    s = EventSink()
    yield s
    s.close()


def shipped(n: int) -> list[dict]:
    return [json.loads(line) for line in SHIPPED.read_text().splitlines() if line.strip()][:n]


def long_rows(n: int = 8) -> list[dict]:
    """Prompts far longer than max_length 64 (TRL alone would drop every one of these rows)."""
    rows = shipped(n)
    for row in rows:
        row["prompt"] = " ".join([row["prompt"]] * 12)
    return rows


def _events(events_sink: EventSink) -> list[dict]:
    events_sink.wait_for(lambda e: e["kind"] == "checkpoint" and e["final"], timeout=30)
    return events_sink.snapshot()


def _lines(events: list[dict], prefix: str = "") -> list[str]:
    return [e["line"] for e in events if e["kind"] == "log" and e["line"].startswith(prefix)]


def test_long_prompts_keep_their_end_and_the_job_trains(tiny_model: Path, tmp_path: Path, sink: EventSink):
    rows = long_rows()
    dataset = write_jsonl(tmp_path / "long.jsonl", rows)
    spec = write_spec(
        tmp_path / "long.json", tiny_model, JobKind.dpo, len(rows), max_steps=4, per_device_batch_size=2,
        learning_rate=5e-4, max_length=64, save_steps=100,
    )  # fmt: skip
    assert_ok(run(DPO, 1, job_args(spec, dataset, tmp_path / "out"), sink))
    events = _events(sink)
    data = _lines(events, "data: train:")
    assert len(data) == 1, _lines(events)
    match = re.search(r"(\d+) rows, (\d+) kept \((\d+) whole, (\d+) truncated: (\d+) prompts cut", data[0])
    assert match, data[0]
    total, kept, whole, truncated, prompts_cut = map(int, match.groups())
    assert (total, kept, whole, truncated, prompts_cut) == (len(rows), len(rows), 0, len(rows), len(rows)), data[0]
    assert "max_length 64 (set in the job spec), prompt budget 32" in data[0]
    assert sorted(losses(events)) == [1, 2, 3, 4]
    assert any("padding-free batches on" in line for line in _lines(events, "performance:")), _lines(events)


def test_no_usable_row_fails_on_the_first_attempt_with_the_setting_to_change(
    tiny_model: Path, tmp_path: Path, sink: EventSink
):
    from trl_nats_agent.recipes.contract import bad_job_sentence

    # Chosen and rejected differ only after their first 40 words: cut to fit, they are the same answer.
    same = " ".join(["the answer is this"] * 10)
    rows = [{"prompt": r["prompt"], "chosen": f"{same} yes.", "rejected": f"{same} no."} for r in shipped(6)]
    dataset = write_jsonl(tmp_path / "unusable.jsonl", rows)
    spec = write_spec(tmp_path / "unusable.json", tiny_model, JobKind.dpo, len(rows), max_length=24, max_steps=2)
    output = tmp_path / "out"
    proc = run(DPO, 1, job_args(spec, dataset, output), sink)
    assert proc.returncode == EXIT_BAD_JOB, proc.stderr[-3000:]
    error = sink.wait_for(lambda e: e["kind"] == "log" and e["level"] == "error", timeout=30)
    assert error is not None and "no row of the train dataset is usable" in error["line"], error
    assert "raise params.max_length" in error["line"] and "6 had chosen and rejected identical" in error["line"]
    assert error["line"] in proc.stderr
    assert bad_job_sentence(proc.stderr.splitlines()) == error["line"]


@pytest.mark.parametrize(
    ("model", "env", "says"),
    [
        ("/no/such/model/dir", {}, "is not a directory on this node"),
        ("some-org/some-model", {"HF_HUB_OFFLINE": "1"}, "the node runs offline (HF_HUB_OFFLINE)"),
    ],
    ids=["missing-path", "hub-offline"],
)
def test_a_model_that_cannot_load_fails_at_once_with_one_sentence(tmp_path: Path, monkeypatch, model, env, says):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rows = shipped(4)
    dataset = write_jsonl(tmp_path / "rows.jsonl", rows)
    spec = write_spec(tmp_path / "spec.json", Path(model), JobKind.dpo, len(rows))
    if not model.startswith("/"):  # write_spec resolves nothing, but keep the hub id exactly as a user wrote it
        raw = json.loads(spec.read_text())
        raw["model"] = model
        spec.write_text(json.dumps(raw))
    start = time.monotonic()
    proc = run(DPO, 1, job_args(spec, dataset, tmp_path / "out"), None)
    elapsed = time.monotonic() - start
    assert proc.returncode == EXIT_BAD_JOB, proc.stderr[-3000:]
    sentence = [line for line in proc.stderr.splitlines() if line.startswith("trl-nats recipe error:")]
    assert len(sentence) == 1 and says in sentence[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr, proc.stderr[-3000:]
    print(f"\n{model}: failed in {elapsed:.1f} s: {sentence[0]}")


# -- 2 ranks, FSDP2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["live", "precomputed"])
def test_padding_free_matches_padded_on_two_ranks(tiny_model: Path, tmp_path: Path, reference: str):
    rows = shipped(16)
    for i, row in enumerate(rows):  # length-skewed: some prompts four times as long
        if i % 3 == 0:
            row["prompt"] = " ".join([row["prompt"]] * 4)
    dataset = write_jsonl(tmp_path / "rows.jsonl", rows)
    results = {}
    for packed in (False, True):
        spec = write_spec(
            tmp_path / f"{packed}.json", tiny_model, JobKind.dpo, len(rows), max_steps=4, per_device_batch_size=2,
            learning_rate=5e-4, max_length=256, save_steps=100, shuffle=False, padding_free=packed,
            precompute_ref=reference == "precomputed",
        )  # fmt: skip
        run_sink = EventSink()
        try:
            assert_ok(run(DPO, 2, job_args(spec, dataset, tmp_path / f"out-{packed}"), run_sink))
            events = _events(run_sink)
        finally:
            run_sink.close()
        assert any("held by rank 0 (sharded)" in line for line in _lines(events)), _lines(events)
        assert any(f"padding-free batches {'on' if packed else 'off'}" in line for line in _lines(events))
        results[packed] = {e["step"]: e["metrics"] for e in events if e["kind"] == "metrics" and "loss" in e["metrics"]}
    assert sorted(results[True]) == sorted(results[False]) == [1, 2, 3, 4]
    for name in ("loss", "grad_norm", "logps/chosen", "logps/rejected"):
        worst = max(abs(results[True][s][name] - results[False][s][name]) for s in results[True])
        scale = max(1.0, max(abs(results[False][s][name]) for s in results[False]))
        print(f"\n{reference}, 2 ranks, packed vs padded {name}: max |diff| = {worst:.3g}")
        assert worst < PACKED_TOLERANCE * scale, (name, results)


def test_lora_dpo_on_two_ranks_with_precomputed_reference_saves_adapter_and_merged_model(
    tiny_model: Path, tmp_path: Path, sink: EventSink
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    rows = shipped(16)
    dataset = write_jsonl(tmp_path / "rows.jsonl", rows)
    spec = write_spec(
        tmp_path / "lora.json", tiny_model, JobKind.dpo, len(rows), epochs=2, per_device_batch_size=2,
        learning_rate=5e-3, max_length=256, precompute_ref=True,
        lora=LoraParams(rank=8, alpha=16.0, dropout=0.0, target_modules=["all-linear"], merge=True),
    )  # fmt: skip
    output = tmp_path / "out"
    assert_ok(run(DPO, 2, job_args(spec, dataset, output), sink))
    events = _events(sink)
    steps = losses(events)
    assert steps[max(steps)] < steps[1], steps
    assert any("LoRA rank 8" in line and "FSDP2 over 2 ranks" in line for line in _lines(events)), _lines(events)
    assert any("pairs computed in" in line for line in _lines(events)), _lines(events)
    assert (output / "final_adapter" / "adapter_config.json").is_file()
    checkpoint = sorted(output.glob("checkpoint-*"))[0]
    assert (checkpoint / "adapter_config.json").is_file(), sorted(p.name for p in checkpoint.iterdir())
    merged = AutoModelForCausalLM.from_pretrained(output / "final")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(output / "final_adapter"))
    import torch

    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        want, got, plain = adapted(input_ids=ids).logits, merged(input_ids=ids).logits, base(input_ids=ids).logits
    assert torch.allclose(want, got, atol=1e-4), float((want - got).abs().max())
    assert (want - plain).abs().max() > 1e-4, "the adapter changed nothing"
