"""The inline no-op trainer: a job "runs" inside the agent itself, no process started.

For benchmarks and scale tests of claiming (``--recipe-override inline:noop``), where a
process start would be all they measure. The job lasts ``noop.steps`` x ``noop.step_s``
seconds (labels, as for ``recipes/noop.py``), its claim kept alive meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from trl_nats_agent.job import RunningJob
from trl_nats_agent.recipes.contract import EXIT_OK


async def run_inline_noop(
    job: RunningJob, keepalive: Callable[[RunningJob], Awaitable[None]]
) -> tuple[int | None, str | None]:
    labels = job.spec.labels
    duration = int(labels.get("noop.steps", "0")) * float(labels.get("noop.step_s", "0.05"))
    if duration > 0 and not job.owns_record:  # a gang member: the leader keeps the claim
        await asyncio.sleep(duration)
    elif duration > 0:
        task = asyncio.create_task(keepalive(job))
        try:
            await asyncio.sleep(duration)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return (None, None) if job.cancel_reason or job.lost_claim else (EXIT_OK, None)
