"""Publishing events so that none is lost through a broker restart or a cluster election.

:func:`publish_once` is one stream publish retried with the same ``Nats-Msg-Id``
(see :mod:`trl_nats.retry`), so it lands exactly once. :class:`EventPublisher`
is the relay's buffered publisher: ``put()`` never waits on the network, so
training never blocks on NATS; a background task publishes in pipelined
batches and re-sends, with the same message id and for as long as it takes,
every event whose ack did not come. While a stream has no leader (an election:
about 5 s on a 3-node cluster) events wait in a bounded buffer, and are
published in order once a leader is back. Only a full buffer drops events,
and then it says so (``dropped``, and an error log naming the bound).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from trl_nats import retry

log = logging.getLogger(__name__)

# ~80 MiB of typical 800-byte events, or many minutes of a fast job's metrics: far beyond an election
MAX_BUFFERED = 100_000


async def publish_once(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    msg_id: str,
    *,
    timeout: float = 5.0,
    bound_s: float | None = retry.WRITE_BOUND_S,
    headers: dict[str, str] | None = None,
) -> PubAck:
    """Publish to a stream and wait for its ack, retried across an election with the same message id."""
    return await retry.publish(js, subject, payload, msg_id, headers=headers, timeout=timeout, bound_s=bound_s)


class EventPublisher:
    """A buffered JetStream publisher for one stream of events (see the module docstring).

    ``flush()`` waits until everything queued has landed; ``close()`` flushes within a timeout and
    then says how many events were never stored.
    """

    def __init__(
        self, js: JetStreamContext, *, batch: int = 256, ack_timeout: float = 5.0, max_buffered: int = MAX_BUFFERED
    ) -> None:
        self.js = js
        self.batch = batch
        self.ack_timeout = ack_timeout
        self.max_buffered = max_buffered
        self._queue: deque[tuple[str, bytes, str]] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0
        self._task: asyncio.Task[None] | None = None
        self._outside_stream: dict[str, bool] = {}
        self.published = 0
        self.retried = 0
        self.dropped = 0

    def start(self) -> EventPublisher:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-publisher")
        return self

    @property
    def pending(self) -> int:
        """Events queued or in flight, not yet stored."""
        return len(self._queue) + self._inflight

    def put(self, subject: str, payload: bytes, msg_id: str) -> bool:
        """Queue one event; never waits. False (and an error log) only when the buffer is full."""
        if self.pending >= self.max_buffered:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "event buffer full (%d events not yet stored, bound %d): NATS has not stored events for a "
                    "long time; dropped %d event(s) so far, the latest %s on %s",
                    self.pending,
                    self.max_buffered,
                    self.dropped,
                    msg_id,
                    subject,
                )
            return False
        self._idle.clear()
        self._queue.append((subject, payload, msg_id))
        self._ready.set()
        return True

    async def flush(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self, timeout: float = 30.0) -> None:
        try:
            await self.flush(timeout)
        except TimeoutError:
            log.error(
                "event publisher closed with %d event(s) NOT stored: NATS did not store them within %.0fs",
                self.pending,
                timeout,
            )
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            items = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            self._inflight = len(items)
            try:
                await self._send(items)
            finally:
                self._inflight = 0
            if not self._queue:
                self._idle.set()

    async def _send(self, items: list[tuple[str, bytes, str]]) -> None:
        futures = []
        for subject, payload, msg_id in items:
            try:
                fut = await self.js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
            except Exception:  # disconnected or too much pending: the retrying path below sends it
                fut = None
            futures.append(fut)
        pending = [f for f in futures if f is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.ack_timeout)
        for (subject, payload, msg_id), fut in zip(items, futures, strict=True):
            ok = fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None
            if not ok:
                if fut is not None and not fut.done():
                    fut.cancel()
                self.retried += 1
                await self._publish_until_stored(subject, payload, msg_id)
            self.published += 1

    async def _publish_until_stored(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Retry one event, in order, until stored: an election only delays it."""
        if await self._outside_any_stream(subject):
            return  # a custom live-only subject: the publish reached live subscribers, no stream keeps it
        while True:
            try:
                await retry.publish(
                    self.js, subject, payload, msg_id, timeout=self.ack_timeout, bound_s=retry.WRITE_BOUND_S
                )
                return
            except retry.NotWritten as exc:
                log.warning("event %s on %s still not stored; still trying: %s", msg_id, subject, exc)
            except Exception as exc:  # refused for good (permissions, too large): retrying cannot help
                self.dropped += 1
                log.error("event %s on %s refused by NATS, not stored: %s", msg_id, subject, exc)
                return

    async def _outside_any_stream(self, subject: str) -> bool:
        """Whether JetStream says no stream captures ``subject`` (a live-only custom events subject).

        Asked once per subject; when the cluster cannot answer now, assume a stream and keep trying.
        """
        if subject not in self._outside_stream:
            try:
                await self.js.find_stream_name_by_subject(subject)
                self._outside_stream[subject] = False
            except NotFoundError:
                self._outside_stream[subject] = True
            except Exception:
                return False
        return self._outside_stream[subject]
