"""The training side's events, from the rank-0 Unix socket to NATS.

Rank 0 writes one JSON object per line, a ``trl_nats.messages.RankEvent`` (see
``recipes/events.py``). The relay decodes each line with ``rank_event``, makes it
this job's and attempt's event (``.event(job_id=, attempt=, node=)``) and hands it
to a callback; a line that is not one is logged and dropped. It never pushes back
on the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

from trl_nats.messages import BadMessage, Event, rank_event

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20


class EventSocket:
    """A Unix socket server for one job attempt; ``on_event`` gets each decoded event."""

    def __init__(self, path: Path, *, job_id: str, attempt: int, node: str, on_event: Callable[[Event], None]) -> None:
        self.path = path
        self.job_id = job_id
        self.attempt = attempt
        self.node = node
        self.on_event = on_event
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._conns.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    log.warning("dropping an over-long event line from rank 0")
                    continue
                if not line:
                    return
                try:
                    raw = json.loads(line)
                except ValueError:
                    log.warning("rank 0 wrote a line that is not JSON: %r", line[:200])
                    continue
                if not isinstance(raw, dict):
                    log.warning("rank 0 wrote a JSON %s, not an object: ignored", type(raw).__name__)
                    continue
                try:
                    event = rank_event(raw).event(job_id=self.job_id, attempt=self.attempt, node=self.node)
                except BadMessage as exc:
                    log.warning("dropping a line from rank 0: %s", exc)
                    continue
                self.on_event(event)
        finally:
            writer.close()
            if task:
                self._conns.discard(task)

    async def close(self) -> None:
        # let connections finish reading what rank 0 flushed before exiting
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5)
        if self._server:
            self._server.close()
        self.path.unlink(missing_ok=True)
