"""The rank-0 event emitter: JSON lines to the node agent over a Unix socket.

The node agent listens on the Unix stream socket named by
``TRL_NATS_EVENTS_SOCKET`` and relays each line to NATS. The recipe must never
wait on it: :meth:`EventEmitter.emit` puts the event on a bounded queue and
returns; a background thread writes. When the queue is full, or the socket is
missing or closed, events are dropped and counted, and training goes on.

Lines are one JSON object each, a typed rank event (``trl_nats.messages.RankEvent``, encoded with the core's
codec; the agent's relay decodes them with ``rank_event``) tagged by ``kind``:

- ``metrics`` (:class:`RankMetrics`): ``{"kind", "step", "total_steps", "epoch", "metrics": {name: float}}``
- ``checkpoint`` (:class:`RankCheckpoint`): ``{"kind", "step", "epoch", "path", "metrics", "final"}``
- ``log`` (:class:`RankLog`): ``{"kind", "level", "line"}``

Only rank 0 emits: on other ranks (and without the variable) every call is a no-op.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time
from typing import Any, Literal

from trl_nats.messages import RankCheckpoint, RankEvent, RankLog, RankMetrics, encode, finite_metrics

from .contract import EVENTS_SOCKET_ENV as SOCKET_ENV

QUEUE_SIZE = 10_000
CLOSE_TIMEOUT_S = 5.0
_STOP = object()


class EventEmitter:
    """Writes events as JSON lines to a Unix socket from a background thread; never blocks the caller."""

    def __init__(self, socket_path: str | None, *, enabled: bool = True, queue_size: int = QUEUE_SIZE) -> None:
        self.socket_path = socket_path
        self.enabled = bool(enabled and socket_path)
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._sock: socket.socket | None = None
        self._broken = False
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="trl-nats-events", daemon=True)
            self._thread.start()

    @classmethod
    def from_env(cls, rank: int) -> EventEmitter:
        return cls(os.environ.get(SOCKET_ENV) or None, enabled=rank == 0)

    # -- the producer side (training thread) -----------------------------------

    def emit(self, event: RankEvent) -> None:
        if not self.enabled:
            return
        if self._broken:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def metrics(self, step: int, total_steps: int | None, epoch: float, metrics: dict[str, Any]) -> None:
        self.emit(
            RankMetrics(
                step=int(step),
                total_steps=int(total_steps) if total_steps else None,
                epoch=float(epoch or 0.0),
                metrics=finite_metrics(metrics),
            )
        )

    def checkpoint(self, step: int, epoch: float, path: str, metrics: dict[str, Any], final: bool = False) -> None:
        self.emit(
            RankCheckpoint(
                step=int(step),
                epoch=float(epoch or 0.0),
                path=str(path),
                metrics=finite_metrics(metrics),
                final=bool(final),
            )
        )

    def log(self, line: str, level: Literal["debug", "info", "warning", "error"] = "info") -> None:
        self.emit(RankLog(level=level, line=line))

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Flush what is queued, waiting at most ``timeout`` seconds, then stop the writer."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while not self._broken and time.monotonic() < deadline:
            try:
                self._queue.put(_STOP, timeout=0.05)
                break
            except queue.Full:
                continue
        self._thread.join(max(0.0, deadline - time.monotonic()))
        sock = self._sock
        if sock is not None and self._thread.is_alive():
            # The writer is stuck in sendall (nobody reads): shutdown wakes it with an error, then it exits.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._thread.join(0.5)
        self._thread = None
        if sock is not None:
            sock.close()
            self._sock = None
        if self.dropped:
            print(f"trl-nats: dropped {self.dropped} events", file=sys.stderr)

    # -- the consumer side (writer thread) -------------------------------------

    def _run(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.connect(self.socket_path)
        except OSError as exc:
            self._give_up(f"cannot connect to events socket {self.socket_path}: {exc}")
            return
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            try:
                self._sock.sendall(encode(event) + b"\n")
            except OSError as exc:
                self._give_up(f"events socket {self.socket_path} closed: {exc}")
                return

    def _give_up(self, reason: str) -> None:
        self._broken = True
        print(f"trl-nats: {reason}; events from now on are dropped", file=sys.stderr)
        while True:  # count what was queued as dropped, and free the queue for close()
            try:
                if self._queue.get_nowait() is not _STOP:
                    self.dropped += 1
            except queue.Empty:
                return
