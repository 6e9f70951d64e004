"""Event pages newest first on a real nats-server: the counting search finds the same pages a full read would.

Two jobs' events interleave in the events stream; one job's long history (above the size that is
simply read from its start) is paged with every limit and cursor shape the API allows.
"""

from __future__ import annotations

import pytest
from trl_nats_provider.openai.history import SMALL, newest_page

from trl_nats.client import Client
from trl_nats.messages import MetricsEvent, encode
from trl_nats.publishing import EventPublisher

pytestmark = pytest.mark.integration


async def _history(client: Client, n: int) -> list[int]:
    """Publish ``n`` events of job a interleaved with others of job b; job a's stream sequences, oldest first."""
    publisher = EventPublisher(client.js).start()
    for step in range(n):
        for job in ("hist-a", "hist-b") if step % 3 else ("hist-a",):
            e = MetricsEvent(job_id=job, attempt=1, step=step, metrics={"loss": 1.0})
            publisher.put(f"{client.names.events(job)}.metrics", encode(e), f"{job}.1.{step}")
    await publisher.close()
    sub = await client.js.subscribe(f"{client.names.events('hist-a')}.>", ordered_consumer=True)
    seqs = []
    while len(seqs) < n:
        msg = await sub.next_msg(timeout=10)
        seqs.append(msg.metadata.sequence.stream)
    await sub.unsubscribe()
    return seqs


async def test_pages_match_a_full_read_newest_first(settings) -> None:
    client = await Client.connect(settings)
    try:
        n = SMALL * 2 + 37
        seqs = await _history(client, n)
        newest_first = list(reversed(seqs))
        stream, subject = client.names.events_stream, f"{client.names.events('hist-a')}.>"
        for limit in (97, 333, n + 5):
            got, before, has_more = [], None, True
            while has_more:
                msgs, has_more = await newest_page(client.js, stream, subject, limit, before)
                assert 0 < len(msgs) <= limit
                got += [m.metadata.sequence.stream for m in msgs]
                before = got[-1]
            assert got == newest_first, limit
        got, before = [], None
        for _ in range(3):  # one at a time, the first few
            msgs, has_more = await newest_page(client.js, stream, subject, 1, before)
            assert len(msgs) == 1 and has_more
            got.append(msgs[0].metadata.sequence.stream)
            before = got[-1]
        assert got == newest_first[:3]
        # a cursor in the middle; the other job's history; a job with none
        msgs, has_more = await newest_page(client.js, stream, subject, 5, newest_first[600])
        assert [m.metadata.sequence.stream for m in msgs] == newest_first[601:606] and has_more
        other = f"{client.names.events('hist-b')}.>"
        msgs, has_more = await newest_page(client.js, stream, other, 3)
        assert len(msgs) == 3 and has_more
        empty, has_more = await newest_page(client.js, stream, f"{client.names.events('nobody')}.>", 3)
        assert empty == [] and not has_more
    finally:
        await client.close()
