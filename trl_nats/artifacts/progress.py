"""A one-line progress bar with MB/s for pulls and puts on a terminal (nothing when not a TTY)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

MB = 1e6


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, *, width: int = 30, every_s: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.every_s = every_s
        self.label = ""
        self.total = self.done = self.moved = 0
        self.t0 = self.last = 0.0

    @classmethod
    def for_terminal(cls, stream: TextIO | None = None) -> ProgressBar | None:
        stream = stream or sys.stderr
        return cls(stream) if stream.isatty() else None

    def start(self, label: str, total_bytes: int, done_bytes: int) -> None:
        self.label, self.total, self.done, self.moved = label, total_bytes, done_bytes, 0
        self.t0 = self.last = time.monotonic()
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done += n
        self.moved += n
        self._draw()

    def finish(self) -> None:
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        rate = self.moved / MB / max(time.monotonic() - self.t0, 1e-9)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{self.label} [{bar}] {self.done / MB:,.1f}/{self.total / MB:,.1f} MB {frac:4.0%} {rate:,.1f} MB/s"

    def _draw(self, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self.last < self.every_s:
            return
        self.last = t
        self.stream.write("\r" + self.line())
        self.stream.flush()
