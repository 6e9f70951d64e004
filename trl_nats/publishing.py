"""Publishing that survives a broker restart: JetStream publish retried with the same message id.

A publish in the moments before the client notices a restart can time out;
retrying with the same ``Nats-Msg-Id`` lets the stream's duplicate window
drop the copy if the first one did land, so each event lands exactly once.
"""

from __future__ import annotations

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
    for i in range(attempts):
        try:
            return await js.publish(subject, payload, timeout=timeout, headers=hdrs)
        except RETRYABLE as exc:
            if i == attempts - 1:
                raise
            log.info("publish %s (id %s) not acknowledged (%s); retrying", subject, msg_id, type(exc).__name__)
        except ConnectionClosedError:
            raise
        await anyio.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
