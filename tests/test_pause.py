"""Pause and resume: the state machine's moves, a queued job paused and resumed, and a 2-rank DPO job (full
and LoRA) paused mid-run, its GPUs freed, resumed on another agent with its own state dir, and completed with
the per-step losses of an uninterrupted run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.pausing import pause_mid_run
from support.processes import NOOP, agents_json
from support.training import assert_adapter_loads, step_losses
from support.waiting import agents_up, wait_for

from trl_nats.client import Client
from trl_nats.messages import JobRecord, JobSpec, JobState, LoraParams, Resources, StatusEvent, TrainingParams
from trl_nats.pausing import CannotPause
from trl_nats.store import LEGAL, IllegalTransition

S = JobState
REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "trl_nats" / "data" / "preferences.jsonl"


@pytest.mark.parametrize(
    ("src", "dst", "legal"),
    [
        (S.scheduled, S.paused, True),  # paused while queued
        (S.in_progress, S.pausing, True),
        (S.pausing, S.paused, True),
        (S.pausing, S.completed, True),  # the run ended before the pause took effect
        (S.pausing, S.cancelled, True),
        (S.paused, S.scheduled, True),  # resume
        (S.paused, S.cancelled, True),
        (S.paused, S.in_progress, False),  # only through the queue
        (S.paused, S.completed, False),
        (S.completed, S.paused, False),
        (S.cancelled, S.pausing, False),
        (S.scheduled, S.pausing, False),
    ],
)
def test_pause_moves_in_the_transition_table(src, dst, legal):
    assert (dst in LEGAL[src]) is legal
    assert not S.paused.terminal and not S.pausing.terminal


async def test_owner_progress_writes_keep_a_job_pausing(settings):
    client = await Client.connect(settings)
    try:
        spec = JobSpec(job_id="p-store", model="m", dataset=await client.upload_dataset([{"a": 1}]))
        await client.store.create(JobRecord(job_id=spec.job_id, spec=spec))
        await client.store.transition("p-store", S.in_progress, change=lambda r: {"owner": "a1", "attempt": 1})
        await client.store.transition("p-store", S.pausing)
        r = await client.store.transition("p-store", S.in_progress, owner="a1", attempt=1, change=lambda r: {"step": 3})
        assert r.state is S.pausing and r.step == 3
        with pytest.raises(IllegalTransition):
            await client.store.transition("p-store", S.scheduled, allowed_from=frozenset({S.paused}))
    finally:
        await client.close()


async def test_queued_job_paused_leaves_the_queue_and_resumes(settings, start_agent):
    """Paused while queued: an agent that meets its message drops it; resume queues a fresh one that runs."""
    client = await Client.connect(settings)
    try:
        spec = JobSpec(
            job_id="queued-p",
            model="m",
            dataset=await client.upload_dataset([{"prompt": "p", "chosen": "c", "rejected": "r"}]),
            labels={"noop.steps": "2"},
        )
        job = await client.submit(spec, check_fleet=False)
        r = await job.pause()
        assert r.state is S.paused and r.owner is None
        assert (await job.pause()).state is S.paused  # idempotent
        start_agent("a1", slots=1, recipe=NOOP)
        await wait_for(lambda: agents_up(client, 1), "the agent")
        await wait_for(lambda: _queue_empty(client), "the agent to drop the paused job's message")
        assert (await job.status()).state is S.paused

        await job.resume()
        with pytest.raises(CannotPause, match="not paused"):
            await job.resume()
        record = await job.wait(timeout=120)
        assert record.state is S.completed and record.attempt == 1
        states = [e.state for e in [e async for e in job.events()] if isinstance(e, StatusEvent)]
        assert states[:3] == [S.scheduled, S.paused, S.scheduled] and states[-1] is S.completed

        with pytest.raises(CannotPause, match="already ended as completed"):
            await job.pause()
    finally:
        await client.close()


async def _queue_empty(client: Client) -> bool:
    info = await client.js.stream_info(client.names.jobs_stream)
    return info.state.messages == 0


async def test_cancel_works_from_paused(settings):
    client = await Client.connect(settings)
    try:
        spec = JobSpec(job_id="cancel-p", model="m", dataset=await client.upload_dataset([{"a": 1}]))
        job = await client.submit(spec, check_fleet=False)
        await job.pause()
        r = await job.cancel()
        assert r.state is S.cancelled
        with pytest.raises(CannotPause, match="is cancelled, not paused"):
            await job.resume()
    finally:
        await client.close()


# -- a real DPO job, 2 CPU ranks -------------------------------------------------------


# LoRA: dropout on, so the resumed run must also restore the RNG state to reproduce the losses
LORA = LoraParams(rank=8, alpha=16.0, dropout=0.05)


def _spec(job_id: str, model: Path, dataset, steps: int, lora: LoraParams | None) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        model=str(model),
        dataset=dataset,
        resources=Resources(gpus_per_node=2),
        params=TrainingParams(
            max_steps=steps,
            per_device_batch_size=2,
            learning_rate=5e-3 if lora else 5e-4,
            max_length=128,
            save_steps=1000,
            lora=lora,
        ),
        max_attempts=1,
    )


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
async def test_dpo_paused_mid_run_resumes_on_another_agent_with_the_same_losses(
    settings, start_agent, tiny_model, env_for, lora
):
    # long enough that the pause (the record polled each second, then the next step boundary) lands mid-run
    # even when steps are quick: 48 rows, 4 per step, so 4 epochs (the same data order after resume is checked too)
    steps = 48
    first = start_agent("first", slots=2)
    client = await Client.connect(settings)
    try:
        rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()[:48]]
        dataset = await client.upload_dataset(rows)
        reference = await (await client.submit(_spec("uninterrupted", tiny_model, dataset, steps, lora))).wait(900)
        assert reference.state is S.completed, reference.error

        job = await client.submit(_spec("paused", tiny_model, dataset, steps, lora))

        record = await pause_mid_run(job, steps)
        ckpt = record.latest_checkpoint

        # the GPUs are free again, as `trl-nats agents` shows, and the agent runs nothing
        env = env_for(PYTHONPATH=os.environ.get("PYTHONPATH", ""))

        async def freed():
            a = [a for a in agents_json(env) if a["agent_id"] == "first"]
            return a and a[0]["free_gpus"] == [0, 1] and a[0]["running_jobs"] == []

        await wait_for(freed, "the paused job's GPUs to show free", 30)
        first.stop()

        second = start_agent("second", slots=2)  # its own state dir: nothing of the first run on its disk
        await wait_for(lambda: agents_up(client, 1), "the second agent")
        out = subprocess.run(
            [sys.executable, "-m", "trl_nats.cli", "resume", "paused"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0 and f"from step {ckpt.step}" in out.stdout, out.stdout + out.stderr
        record = await job.wait(timeout=900)
        assert record.state is S.completed, record.error
        assert record.allocation[0].agent == "second" and record.step == steps
        assert not (second.state_dir / "outputs" / "paused" / f"checkpoint-{ckpt.step - 1}").exists()

        ours, theirs = await step_losses(client, "paused"), await step_losses(client, "uninterrupted")
        assert [s for s, _ in ours] == list(range(1, steps + 1)), "each step's metrics event exactly once"
        assert [s for s, _ in theirs] == list(range(1, steps + 1))
        for (step, a), (_, b) in zip(ours, theirs, strict=True):
            assert abs(a - b) <= 1e-6, f"step {step}: loss {a} after pause/resume, {b} uninterrupted"

        states = [e.state for e in [e async for e in job.events()] if isinstance(e, StatusEvent)]
        assert S.paused in states and states[-1] is S.completed
        pulled = await asyncio.wait_for(client.pull("paused", "final", second.state_dir / "pulled"), 120)
        if lora is not None:  # the final artifact is the adapter, in PEFT format, and loads onto the base
            assert_adapter_loads(pulled.path, tiny_model, rank=lora.rank)
    finally:
        await client.close()


@pytest.mark.parametrize(("state", "shown"), [(S.paused, "scheduled"), (S.pausing, "in_progress")])
def test_llama_stack_status_of_a_paused_job_is_the_closest_one(state, shown):
    from trl_nats_provider import mapping

    from trl_nats.messages import DatasetRef

    ref = DatasetRef(object="sha256-" + "0" * 64, sha256="0" * 64, rows=1, bytes=2)
    rec = JobRecord(job_id="p", spec=JobSpec(job_id="p", model="m", dataset=ref), state=state)
    assert mapping.status_response(rec).status.value == shown


@pytest.mark.parametrize(
    ("exit_code", "paused", "cancel", "state"),
    [
        (0, True, None, S.paused),  # stopped at the pause, checkpoint stored
        (0, False, None, S.completed),  # ran to the end before the pause took effect
        (1, True, None, S.scheduled),  # a stale marker never hides a failure: retried as usual
        (0, True, "cancelled by user", S.cancelled),  # cancel wins over pause
    ],
)
def test_attempt_outcome_of_a_pause(exit_code, paused, cancel, state):
    from trl_nats_agent.outcome import Settle, outcome

    end = outcome(
        exit_code=exit_code, error=None, attempt=1, max_attempts=3, agent_id="a1", cancel_reason=cancel, paused=paused
    )
    assert end.state is state
    if state is S.paused:
        assert end.settle is Settle.ack and end.handed_back and not end.failed and "resume" in end.message


def test_pause_callback_saves_and_stops_at_the_next_step_once_asked(tmp_path):
    """One process (no process group): the flag file asks, the callback sets should_save and should_training_stop."""
    from transformers import TrainerControl, TrainerState
    from trl_nats_agent.recipes.contract import PAUSE_FLAG, PAUSED_MARKER
    from trl_nats_agent.recipes.pause import PauseCallback

    class Events:
        lines: list[str] = []

        def log(self, line, level="info"):
            self.lines.append(line)

    (tmp_path / PAUSE_FLAG).write_text("stale")  # left by an earlier run: not for this one
    (tmp_path / PAUSED_MARKER).write_text("{}")
    cb = PauseCallback(tmp_path, Events(), is_main=True)
    assert not (tmp_path / PAUSE_FLAG).exists() and not (tmp_path / PAUSED_MARKER).exists()
    state, control = TrainerState(global_step=3), TrainerControl()
    cb.on_step_end(None, state, control)
    assert not control.should_save and not control.should_training_stop and not cb.paused

    (tmp_path / PAUSE_FLAG).write_text("pause\n")
    state.global_step = 4
    cb.on_step_end(None, state, control)
    assert control.should_save and control.should_training_stop and cb.paused and cb.step == 4
    assert Events.lines == ["pausing after step 4: saving checkpoint-4"]
    cb.confirm()
    assert json.loads((tmp_path / PAUSED_MARKER).read_text()) == {"step": 4}


async def test_a_pausing_job_whose_owner_died_is_taken_over_and_stays_pausing(settings):
    """Its new owner runs it in the pausing state, so it pauses at its first step instead of staying stuck."""
    from trl_nats.messages import Allocation

    client = await Client.connect(settings)
    try:
        spec = JobSpec(job_id="p-takeover", model="m", dataset=await client.upload_dataset([{"a": 1}]))
        await client.store.create(JobRecord(job_id=spec.job_id, spec=spec))
        await client.store.transition("p-takeover", S.in_progress, change=lambda r: {"owner": "dead", "attempt": 1})
        record = await client.store.transition("p-takeover", S.pausing)
        taken = await client.store.claim(record, "a2", [Allocation(agent="a2", node="n2", gpus=[0])])
        assert taken.state is S.pausing and taken.owner == "a2" and taken.attempt == 2
    finally:
        await client.close()
