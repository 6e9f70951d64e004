"""Failure classes through a real agent: a job that can never run fails on attempt 1 with one sentence,
a job that hit a transient fault is retried and then completes.

Permanent: rows the row schema rejects (uploaded past the client, as any NATS publisher can), a local
model path that does not exist on the node, a hub id on an agent run ``--offline`` (these three the agent
finds before any rank starts), and a model directory whose config.json is broken (found by the real DPO
recipe under torchrun, which exits EXIT_BAD_JOB with its one line). Transient: a rank SIGKILLed mid-run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest
from support import NOOP, ROWS, agents_up, rank_pids, wait_for

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, StatusEvent, TrainingParams

pytestmark = pytest.mark.integration

BAD_ROWS = ROWS[:1] + [{"prompt": "p1", "rejected": "bad"}] + ROWS[2:]  # row 2 has no "chosen"

BROKEN = "<a model directory with a broken config.json>"

# (case, model (None: the tiny local model), rows, what the one sentence must say)
PERMANENT = [
    ("bad rows on the agent", None, BAD_ROWS, ["row 2", "chosen"]),
    ("model the recipe cannot load", BROKEN, ROWS, [BROKEN]),
    ("missing local model", "/nonexistent/models/tiny-typo", ROWS, ["/nonexistent/models/tiny-typo", "does not exist"]),
    ("hub id, agent offline", "some-org/not-downloaded", ROWS, ["some-org/not-downloaded", "offline", "local model path"]),
]  # fmt: skip


async def test_permanent_errors_fail_on_attempt_1_with_their_sentence(settings, start_agent, tiny_model, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{this is not json")
    start_agent("offline-agent", extra=["--offline"])
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 1), "the agent to heartbeat")
        for i, (case, model, rows, said) in enumerate(PERMANENT):
            model = {None: str(tiny_model), BROKEN: str(broken)}.get(model, model)
            said = [str(broken) if s == BROKEN else s for s in said]
            data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
            spec = JobSpec(
                job_id=f"permanent-{i}",
                model=model,
                dataset=await client.upload_dataset(data),
                max_attempts=3,
                params=TrainingParams(max_steps=2),
            )
            record = await (await client.submit(spec)).wait(timeout=600)
            assert record.state is JobState.failed, f"{case}: {record.state} {record.error}"
            assert record.attempt == 1, f"{case}: needed {record.attempt} attempts"
            error = record.error or ""
            assert all(s in error for s in said), f"{case}: {error!r}"
            assert "\n" not in error and "Traceback" not in error, f"{case}: not one sentence: {error!r}"
            statuses = [e for e in [e async for e in client.job(spec.job_id).events()] if isinstance(e, StatusEvent)]
            assert [e.state for e in statuses] == [JobState.scheduled, JobState.in_progress, JobState.failed], case
            assert "cannot run as specified" in statuses[-1].message and error in statuses[-1].message

        async def queue_empty() -> bool:  # the message is settled (term) just after the record is written
            return (await client.js.stream_info(client.names.jobs_stream)).state.messages == 0

        await wait_for(queue_empty, "every failed job's message to leave the queue", timeout=60)
    finally:
        await client.close()


async def test_a_rank_sigkilled_is_retried_and_then_completes(settings, start_agent):
    start_agent("agent-k", recipe=NOOP)
    client = await Client.connect(settings)
    try:
        spec = JobSpec(
            job_id="killed-rank",
            model="unused",
            dataset=await client.upload_dataset(ROWS),
            max_attempts=3,
            labels={"noop.steps": "40", "noop.step_s": "0.1"},
        )
        job = await client.submit(spec)

        async def training():
            rec = await job.status()
            return rec.state is JobState.in_progress and rec.step > 0 and rec.attempt == 1 and rank_pids(spec.job_id)

        pids = await wait_for(training, "attempt 1 to train", timeout=300)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        record = await job.wait(timeout=300)
        assert record.state is JobState.completed and record.attempt == 2, (record.state, record.attempt)
        statuses = [e for e in [e async for e in job.events()] if isinstance(e, StatusEvent)]
        assert [e.state for e in statuses] == [
            JobState.scheduled,
            JobState.in_progress,
            JobState.scheduled,
            JobState.in_progress,
            JobState.completed,
        ]
        assert statuses[2].message.startswith("attempt 1 failed; retrying")
        await asyncio.sleep(0)
    finally:
        await client.close()
