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


async def test_claim_is_one_compare_and_set_and_the_second_claimer_loses(settings):
    from trl_nats.messages import Allocation

    client, spec = await _client_and_spec(settings)
    store = client.store
    try:
        seen, _ = await store.create(JobRecord(job_id="j1", spec=spec))
        alloc = [Allocation(agent="a1", node="n1", gpus=[0, 1])]
        won = await store.claim(seen, "a1", alloc)
        assert (won.state, won.owner, won.attempt, won.runs, won.allocation) == (
            JobState.in_progress,
            "a1",
            1,
            1,
            alloc,
        )
        assert won.started_at is not None
        with pytest.raises(LostClaim):  # a2 read the record before a1's claim landed
            await store.claim(seen, "a2", [Allocation(agent="a2", node="n2", gpus=[0])])
        taken = await store.claim(won, "a2", [Allocation(agent="a2", node="n2", gpus=[0])])  # a1 gone: takeover
        assert (taken.owner, taken.attempt, taken.runs) == ("a2", 2, 2)
        done = await store.transition("j1", JobState.completed, owner="a2", attempt=2)
        with pytest.raises(IllegalTransition):
            await store.claim(done, "a3", [])
    finally:
        await client.close()


async def test_fail_job_marks_the_record_and_tells_the_watchers(settings):
    from trl_nats.events import fail_job
    from trl_nats.messages import StatusEvent, decode

    client, spec = await _client_and_spec(settings)
    store = client.store
    sent: list[tuple[str, bytes, str]] = []
    try:
        await store.create(JobRecord(job_id="j1", spec=spec))
        rec = await fail_job(
            store,
            lambda *m: sent.append(m),
            client.names,
            "j1",
            "gave up",
            agent="a1",
            allowed_from=frozenset({JobState.scheduled}),
        )
        assert (rec.state, rec.owner, rec.error) == (JobState.failed, None, "gave up")
        assert (await store.get("j1")).state is JobState.failed
        [(subject, payload, msg_id)] = sent
        assert subject == "trl.events.j1.status" and msg_id.startswith("j1.0.")
        event = decode(payload, StatusEvent)
        assert (event.state, event.agent, event.message, event.seq) == (
            JobState.failed,
            "a1",
            "gave up",
            int(msg_id[5:]),
        )
        with pytest.raises(IllegalTransition):  # already ended: nothing more is published
            await fail_job(store, lambda *m: sent.append(m), client.names, "j1", "again")
        assert len(sent) == 1
        with pytest.raises(JobNotFound):
            await fail_job(store, lambda *m: sent.append(m), client.names, "nope", "x")
    finally:
        await client.close()


async def test_events_of_a_job_with_its_own_subject_go_there(settings):
    from trl_nats.events import event_subject
    from trl_nats.messages import LogEvent

    client, spec = await _client_and_spec(settings)
    try:
        custom = JobSpec(job_id="j2", model="m", dataset=spec.dataset, events_subject="team.a.runs")
        assert client.names.job_events(spec) == "trl.events.j1"
        assert client.names.job_events(custom) == "team.a.runs"
        assert event_subject(client.names, custom, LogEvent(job_id="j2", attempt=1, line="x")) == "team.a.runs.log"
    finally:
        await client.close()
