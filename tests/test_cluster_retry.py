"""The retry helper (trl_nats.retry) and the event publisher across elections.

Unit tests pin the decisions (what is transient, how a retried compare-and-set recognises
its own landed write, what the final error says); their integration twins run on a real
3-node cluster whose leaders are SIGKILLed, or which loses its quorum altogether.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import nats.errors
import nats.js.errors
import pytest
from support.cluster import cluster_settings, leader, local_cluster, retrying, streams

from trl_nats import retry
from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState
from trl_nats.publishing import EventPublisher
from trl_nats.store import JobNotFound

# -- decisions (unit) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (nats.errors.TimeoutError(), True),
        (TimeoutError(), True),
        (nats.js.errors.NoStreamResponseError(), True),  # "no response from stream": an election
        (nats.errors.NoRespondersError(), True),
        (nats.js.errors.ServiceUnavailableError(code=503, description="JetStream cluster not available"), True),
        (nats.errors.ConnectionReconnectingError(), True),
        (nats.js.errors.APIError(code=409, err_code=10158, description="duplicate message id is in process"), True),
        (nats.js.errors.KeyWrongLastSequenceError(description="wrong last sequence: 4"), False),  # a real conflict
        (nats.js.errors.BadRequestError(code=400, description="bad"), False),
        (nats.js.errors.NotFoundError(code=404, description="stream not found"), False),
        (nats.errors.ConnectionClosedError(), False),
        (PermissionError("refused"), False),
    ],
)
def test_only_what_an_election_looks_like_is_retried(exc, expected):
    assert retry.transient(exc) is expected


class _Entry:
    def __init__(self, value: bytes, revision: int) -> None:
        self.value, self.revision = value, revision


class LossyKV:
    """A KV whose first update lands but whose ack is lost (as when the leader dies right after storing)."""

    def __init__(self) -> None:
        self.entries = [_Entry(b"v1", 1)]
        self.updates = 0
        self.lose_next_ack = True

    async def update(self, key, value, last):
        self.updates += 1
        if self.entries[-1].revision != last:
            raise nats.js.errors.KeyWrongLastSequenceError(description=f"wrong last sequence: {last}")
        self.entries.append(_Entry(value, last + 10))
        if self.lose_next_ack:
            self.lose_next_ack = False
            raise nats.errors.TimeoutError()
        return last + 10

    async def get(self, key):
        return self.entries[-1]

    async def history(self, key):
        return list(self.entries)


async def test_a_retried_update_recognises_its_own_landed_write():
    kv = LossyKV()
    assert await retry.kv_update(kv, "j1", b"v2", 1) == 11
    assert kv.updates == 2 and [e.value for e in kv.entries] == [b"v1", b"v2"], "written once"


async def test_a_retried_update_recognises_its_write_even_after_another_writer_followed():
    kv = LossyKV()
    real_update = kv.update

    async def update_then_someone_else(key, value, last):
        try:
            return await real_update(key, value, last)
        finally:
            if len(kv.entries) == 2:
                kv.entries.append(_Entry(b"theirs", 12))  # another writer, right after ours

    kv.update = update_then_someone_else
    assert await retry.kv_update(kv, "j1", b"v2", 1) == 11


async def test_a_real_conflict_after_a_lost_ack_is_still_a_conflict():
    kv = LossyKV()
    kv.lose_next_ack = False
    kv.entries.append(_Entry(b"theirs", 5))
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await retry.kv_update(kv, "j1", b"v2", 1)


async def test_a_write_that_never_lands_fails_loudly_with_what_was_not_written():
    calls = 0

    async def never():
        nonlocal calls
        calls += 1
        raise nats.js.errors.NoStreamResponseError()

    with pytest.raises(retry.NotWritten, match=r"the final state of j1 was NOT written: .* within \d+s"):
        await retry.retry_write(never, "the final state of j1", bound_s=0.5)
    assert calls > 2


async def test_a_permanent_error_is_not_retried():
    calls = 0

    async def refused():
        nonlocal calls
        calls += 1
        raise nats.js.errors.BadRequestError(code=400, description="maximum payload exceeded")

    with pytest.raises(nats.js.errors.BadRequestError):
        await retry.retry_write(refused, "x")
    assert calls == 1


# -- on a real cluster -----------------------------------------------------------------------


@pytest.fixture
def nats_cluster(tmp_path):
    yield from local_cluster(tmp_path)


@pytest.fixture
def settings(nats_cluster):
    return cluster_settings(nats_cluster)


async def test_writes_land_once_across_the_loss_of_their_leader(settings, nats_cluster):
    client = await Client.connect(settings)
    try:
        names = streams(client.names)
        await client.topo.jobs.put("j1", b"v1")
        entry = await client.topo.jobs.get("j1")
        victim = await leader(client, names["events"])
        nats_cluster.kill(victim)
        started = time.monotonic()
        ack = await retry.publish(client.js, "trl.events.j1.log", b"{}", "j1.1.1")
        took = [time.monotonic() - started]
        nats_cluster.restart(victim)
        again = await retry.publish(client.js, "trl.events.j1.log", b"{}", "j1.1.1")
        assert again.duplicate and again.seq == ack.seq, "the same message id is stored once"

        nats_cluster.kill(await leader(client, names["jobs-kv"]))
        started = time.monotonic()
        revision = await retry.kv_update(client.topo.jobs, "j1", b"v2", entry.revision)
        took.append(time.monotonic() - started)
        history = await retrying(lambda: client.topo.jobs.history("j1"), "the record's history")
        assert [e.value for e in history] == [b"v1", b"v2"]
        assert (await client.topo.jobs.get("j1")).revision == revision
        print(f"\nlanded {took[0]:.1f}s (event) and {took[1]:.1f}s (record) after their leader was SIGKILLed")
    finally:
        await client.close()
        for node in nats_cluster.nodes:
            if not node.running:
                nats_cluster.restart(node.name, wait=False)


async def test_event_publisher_holds_events_while_no_leader_can_be_elected_and_says_when_full(
    settings, nats_cluster, caplog
):
    client = await Client.connect(settings)
    publisher = EventPublisher(client.js, ack_timeout=1.0, max_buffered=5).start()
    try:
        subject = client.names.event(client.names.events("held"), "log")
        publisher.put(subject, b"{}", "held.1.1")
        await publisher.flush(30)
        # two of three nodes gone: no quorum, no leader, nothing can be stored
        up = await leader(client, client.names.events_stream)
        for node in nats_cluster.nodes:
            if node.name != up:
                nats_cluster.kill(node.name)
        with caplog.at_level(logging.ERROR, logger="trl_nats.publishing"):
            accepted = [publisher.put(subject, b"{}", f"held.1.{i}") for i in range(2, 9)]
        assert accepted == [True] * 5 + [False] * 2 and publisher.dropped == 2
        assert "event buffer full" in caplog.text and "dropped 1 event(s)" in caplog.text
        await asyncio.sleep(3)
        assert publisher.pending == 5, "events waiting for a leader are held, not dropped"
        for node in nats_cluster.nodes:
            if not node.running:
                nats_cluster.restart(node.name, wait=False)
        await publisher.flush(120)
        info = await client.js.stream_info(client.names.events_stream)
        assert info.state.messages == 6 and publisher.dropped == 2
    finally:
        await publisher.close(5)
        await client.close()


async def test_a_submission_without_quorum_is_refused_saying_nothing_was_queued(settings, nats_cluster):
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset([{"prompt": "p", "chosen": "a", "rejected": "b"}])
        impatient = Client(client.nc, msgspec.structs.replace(settings, write_retry_s=3.0), client.topo)
        survivor = nats_cluster.nodes[0].name
        for node in nats_cluster.nodes[1:]:
            nats_cluster.kill(node.name)
        spec = JobSpec(job_id="refused", model="m", dataset=ref)
        with pytest.raises(retry.NotWritten, match=r"record of job refused was NOT written: .*Nothing was queued"):
            await impatient.submit(spec, check_fleet=False)
        for node in nats_cluster.nodes[1:]:
            nats_cluster.restart(node.name, wait=False)
        await asyncio.to_thread(nats_cluster.wait_healthy)
        queue = await retrying(lambda: client.js.stream_info(client.names.jobs_stream), "jobs stream info")
        assert queue.state.messages == 0, "nothing was queued"

        async def stored():
            try:
                return await client.store.get("refused")
            except JobNotFound:
                return None

        # the record's write may still be committed once a quorum is back; never a queued job
        record = await retrying(stored, "reading the record")
        assert record is None or record.state is JobState.scheduled
        await client.submit(spec, check_fleet=False)  # submitting again finishes it, once
        queue = await client.js.stream_info(client.names.jobs_stream)
        assert queue.state.messages == 1 and (await client.store.get("refused")).state is JobState.scheduled
        print(f"\nrefused while only {survivor} was up; queued once on the second submission")
    finally:
        await client.close()
