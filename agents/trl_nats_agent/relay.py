"""The training side's events, from the rank-0 Unix socket to NATS.

Rank 0 writes one JSON object per line (see ``recipes/events.py``). The
relay turns each line into a typed event for this job and attempt, numbers
it, and hands it to a callback; it never pushes back on the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

from trl_nats.messages import Checkpoint, CheckpointEvent, Event, LogEvent, MetricsEvent

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20


def _floats(d: object) -> dict[str, float]:
    if not isinstance(d, dict):
        return {}
    out = {}
    for k, v in d.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[str(k)] = float(v)
    return out


def to_event(raw: dict, *, job_id: str, attempt: int, node: str) -> Event | None:
    """One line from rank 0 as an Event; None (and a warning) for anything malformed."""
    kind = raw.get("kind")
    try:
        if kind == "metrics":
            total = raw.get("total_steps")
            return MetricsEvent(
                job_id=job_id,
                attempt=attempt,
                step=int(raw["step"]),
                total_steps=int(total) if total is not None else None,
                epoch=float(raw.get("epoch") or 0.0),
                metrics=_floats(raw.get("metrics")),
            )
        if kind == "checkpoint":
            ckpt = Checkpoint(
                step=int(raw["step"]),
                epoch=float(raw.get("epoch") or 0.0),
                path=str(raw["path"]),
                node=node,
                metrics=_floats(raw.get("metrics")),
                final=bool(raw.get("final", False)),
            )
            return CheckpointEvent(job_id=job_id, attempt=attempt, checkpoint=ckpt)
        if kind == "log":
            level = raw.get("level", "info")
            if level not in ("debug", "info", "warning", "error"):
                level = "info"
            return LogEvent(job_id=job_id, attempt=attempt, level=level, line=str(raw.get("line", ""))[:4000])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("malformed %s event from rank 0: %s", kind, exc)
        return None
    log.warning("unknown event kind from rank 0: %r", kind)
    return None


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
                event = to_event(raw, job_id=self.job_id, attempt=self.attempt, node=self.node)
                if event is not None:
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
