"""JobStore against a real nats-server: legal moves only, compare-and-set, claim ownership."""

import asyncio

import pytest

from trl_nats.client import Client, JobAlreadyFinished
from trl_nats.messages import JobRecord, JobSpec, JobState
from trl_nats.store import IllegalTransition, JobNotFound, LostClaim

pytestmark = pytest.mark.integration


async def _client_and_spec(settings, job_id="j1"):
    client = await Client.connect(settings)
    ref = await client.upload_dataset([{"prompt": "p", "chosen": "c", "rejected": "r"}])
    return client, JobSpec(job_id=job_id, model="m", dataset=ref)


async def test_create_is_idempotent_on_job_id(settings):
    client, spec = await _client_and_spec(settings)
    try:
        rec, created = await client.store.create(JobRecord(job_id="j1", spec=spec))
        again, created_again = await client.store.create(JobRecord(job_id="j1", spec=spec))
        assert created and not created_again and again.submitted_at == rec.submitted_at
    finally:
        await client.close()


async def test_only_legal_transitions(settings):
    client, spec = await _client_and_spec(settings)
    store = client.store
    try:
        await store.create(JobRecord(job_id="j1", spec=spec))
        with pytest.raises(IllegalTransition, match="scheduled; it cannot become completed"):
            await store.transition("j1", JobState.completed)
        rec = await store.transition("j1", JobState.in_progress, change=lambda r: {"owner": "a1", "attempt": 1})
        assert rec.started_at is not None and rec.owner == "a1"
        rec = await store.transition("j1", JobState.completed, owner="a1", attempt=1)
        assert rec.finished_at is not None
        for to in JobState:
            with pytest.raises(IllegalTransition):
                await store.transition("j1", to)
    finally:
        await client.close()


async def test_stale_owner_cannot_write(settings):
    client, spec = await _client_and_spec(settings)
    store = client.store
    try:
        await store.create(JobRecord(job_id="j1", spec=spec))
        await store.transition("j1", JobState.in_progress, change=lambda r: {"owner": "a1", "attempt": 1})
        # a second agent takes over after a1's claim lapsed
        await store.transition(
            "j1", JobState.in_progress, owner="a1", attempt=1, change=lambda r: {"owner": "a2", "attempt": 2}
        )
        with pytest.raises(LostClaim):
            await store.transition("j1", JobState.completed, owner="a1", attempt=1)
        assert (await store.get("j1")).state is JobState.in_progress
    finally:
        await client.close()


async def test_concurrent_writers_all_land_through_cas(settings):
    client, spec = await _client_and_spec(settings)
    store = client.store
    try:
        await store.create(JobRecord(job_id="j1", spec=spec))
        await store.transition("j1", JobState.in_progress, change=lambda r: {"owner": "a1", "attempt": 1})

        async def bump(i: int) -> None:
            await store.transition(
                "j1", JobState.in_progress, change=lambda r: {"last_metrics": {**r.last_metrics, f"m{i}": float(i)}}
            )

        await asyncio.gather(*(bump(i) for i in range(20)))
        assert len((await store.get("j1")).last_metrics) == 20
    finally:
        await client.close()


async def test_cancel_of_waiting_job_and_errors(settings):
    client, spec = await _client_and_spec(settings)
    try:
        job = await client.submit(spec)
        rec = await job.cancel()
        assert rec.state is JobState.cancelled
        with pytest.raises(JobAlreadyFinished, match="already ended as cancelled"):
            await job.cancel()
        with pytest.raises(JobNotFound, match="no job with id 'nope'"):
            await client.cancel("nope")
        # resubmitting a finished id does not queue it again
        again = await client.submit(spec)
        assert (await again.status()).state is JobState.cancelled
    finally:
        await client.close()
