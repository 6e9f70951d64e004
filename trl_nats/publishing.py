"""Publishing that survives a broker restart: JetStream publish retried with the same message id.

A publish in the moments before the client notices a restart can time out;
retrying with the same ``Nats-Msg-Id`` lets the stream's duplicate window
drop the copy if the first one did land, so each event lands exactly once.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

RETRYABLE = (NatsTimeout, NoRespondersError, ServiceUnavailableError, TimeoutError)


async def publish_once(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    msg_id: str,
    *,
    timeout: float = 5.0,
    attempts: int = 20,
    headers: dict[str, str] | None = None,
) -> PubAck:
    hdrs = {"Nats-Msg-Id": msg_id, **(headers or {})}
    delay = 0.1
    violations = getattr(js._nc, "trl_violations", ())
    seen = len(violations)
    for i in range(attempts):
        try:
            return await js.publish(subject, payload, timeout=timeout, headers=hdrs)
        except RETRYABLE as exc:
            if i == attempts - 1 or len(violations) > seen:
                raise  # the server refused it (permissions): retrying cannot help
            log.info("publish %s (id %s) not acknowledged (%s); retrying", subject, msg_id, type(exc).__name__)
        except ConnectionClosedError:
            raise
        await anyio.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


class EventPublisher:
    """A buffered JetStream publisher for one stream of events.

    ``put()`` never waits on the network: events queue in memory and a
    background task publishes them in pipelined batches (``publish_async``),
    re-sending any batch member that was not acknowledged with the same
    message id. ``flush()`` waits until everything queued has landed.
    """

    def __init__(self, js: JetStreamContext, *, batch: int = 256, ack_timeout: float = 5.0) -> None:
        self.js = js
        self.batch = batch
        self.ack_timeout = ack_timeout
        self._queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.retried = 0

    def start(self) -> EventPublisher:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-publisher")
        return self

    def put(self, subject: str, payload: bytes, msg_id: str) -> None:
        self._idle.clear()
        self._queue.put_nowait((subject, payload, msg_id))

    async def flush(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self, timeout: float = 30.0) -> None:
        try:
            await self.flush(timeout)
        except TimeoutError:
            log.warning("event publisher closed with %d events unsent", self._queue.qsize())
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            items = [first]
            while len(items) < self.batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            futures = []
            for subject, payload, msg_id in items:
                try:
                    fut = await self.js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
                except Exception:  # disconnected: fall back to the retrying path below
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
                    try:
                        await publish_once(self.js, subject, payload, msg_id, timeout=self.ack_timeout, attempts=1000)
                    except Exception as exc:  # never kill the publisher: the job goes on
                        log.error("dropping event %s on %s: %s", msg_id, subject, exc)
                        continue
                self.published += 1
            if self._queue.empty():
                self._idle.set()
