"""Store writes that must ride out a broker restart: retried until written or a final answer comes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from trl_nats.store import IllegalTransition, JobNotFound, LostClaim

log = logging.getLogger("trl_nats_agent")


async def write_until_done[T](write: Callable[[], Awaitable[T]], what: str, timeout: float = 600.0) -> T:
    """Retry ``write`` through a broker restart; LostClaim, IllegalTransition and JobNotFound are final answers."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return await write()
        except (LostClaim, IllegalTransition, JobNotFound):
            raise
        except Exception as exc:
            if time.monotonic() > deadline:
                raise
            log.info("%s not written yet (%s: %s); retrying", what, type(exc).__name__, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
