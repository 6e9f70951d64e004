"""Waiting for something to become true. The timeouts are hang guards, never speed limits."""

from __future__ import annotations

import asyncio
import time

GUARD_S = 600.0  # long enough for a whole job on a busy 2-core machine


async def wait_for(predicate, what: str, timeout: float = 180.0, every: float = 0.2):
    """Poll an async predicate until it returns something truthy; its value is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_through_restarts(predicate, what: str, timeout: float = GUARD_S, every: float = 0.3):
    """Like :func:`wait_for`, but an error while the broker restarts counts as "not yet".

    An AssertionError, and the store's JobNotFound, still end the wait: they are answers, not outages.
    """
    from trl_nats.store import JobNotFound

    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except (JobNotFound, AssertionError):
            raise
        except Exception as exc:
            last_exc = exc
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_exc})")


async def agents_up(client, n: int) -> bool:
    """At least ``n`` agents are heartbeating."""
    return len(await client.list_agents()) >= n
