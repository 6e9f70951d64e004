"""A page of one job's stored events, newest first, without reading its whole history.

JetStream reads a subject forwards only, and OpenAI lists events newest first with a cursor. Reading
a long history from its start for every page costs seconds (nats-py handles a few thousand messages
a second), so a page is found by counting instead: an ephemeral consumer from sequence ``s`` with
the job's subject filter reports how many of the job's events lie at or after ``s`` (its
``num_pending``) without delivering any. A binary search over ``s`` finds where the newest
``limit`` events before the cursor begin, in about log2(stream length) counts, and only those
``limit`` messages are read.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

SMALL = 500  # histories up to this many events are simply read from their start


async def _count_from(js: JetStreamContext, stream: str, subject: str, seq: int) -> int:
    """How many messages on ``subject`` the stream holds at sequence ``seq`` or later."""
    info = await js.add_consumer(
        stream,
        ConsumerConfig(
            filter_subject=subject,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, seq),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=10.0,
            mem_storage=True,
            num_replicas=1,
        ),
    )
    try:
        return info.num_pending
    finally:
        await js.delete_consumer(stream, info.name)


async def _read(js: JetStreamContext, stream: str, subject: str, start: int, end: int, most: int) -> list:
    """Messages on ``subject`` with sequence in [start, end), at most ``most`` of them, oldest first."""
    psub = await js.pull_subscribe(
        subject,
        durable=None,
        stream=stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=10.0,
            mem_storage=True,
            num_replicas=1,
        ),
    )
    out = []
    try:
        while len(out) < most:
            msgs = await psub.fetch(min(most - len(out), 1000), timeout=5)
            for msg in msgs:
                if msg.metadata.sequence.stream >= end:
                    return out
                out.append(msg)
            if not msgs or msgs[-1].metadata.num_pending == 0:
                return out
    finally:
        await psub.unsubscribe()
    return out


async def newest_page(
    js: JetStreamContext, stream: str, subject: str, limit: int, before: int | None = None
) -> tuple[list, bool]:
    """The newest ``limit`` messages on ``subject`` with sequence below ``before`` (all, without it), newest
    first, and whether older ones remain."""
    info = await js.stream_info(stream, subjects_filter=subject)
    state = info.state
    total = sum((state.subjects or {}).values())
    if total == 0:
        return [], False
    end = state.last_seq + 1 if before is None else min(before, state.last_seq + 1)
    after_end = await _count_from(js, stream, subject, end) if end <= state.last_seq else 0
    count = total - after_end  # the job's events below ``end``
    if count <= 0:
        return [], False
    if count <= limit:
        start = state.first_seq
    elif count <= SMALL:
        msgs = await _read(js, stream, subject, state.first_seq, end, count)
        return list(reversed(msgs[-limit:])), True
    else:
        lo, hi = state.first_seq, end  # find the lowest start holding at most ``limit`` of them
        while lo < hi:
            mid = (lo + hi) // 2
            if await _count_from(js, stream, subject, mid) - after_end <= limit:
                hi = mid
            else:
                lo = mid + 1
        start = lo
    msgs = await _read(js, stream, subject, start, end, limit)
    return list(reversed(msgs)), count > len(msgs)
