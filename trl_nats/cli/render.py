"""How the CLI shows things to a person: tables, ages, live progress of a job, job and agent listings."""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec

from trl_nats.messages import AgentRecord, CheckpointEvent, GangRecord, JobRecord, LogEvent, MetricsEvent, StatusEvent


def dump(obj: Any) -> str:
    """One JSON line (``--json`` output)."""
    return msgspec.json.encode(obj).decode()


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, time.time() - ts)
    if s < 90:
        return f"{s:.0f}s ago"
    if s < 5400:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


class Progress:
    """Renders a job's events as a live progress line (or plain lines when not a terminal)."""

    def __init__(self, stream=sys.stdout, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.t0: float | None = None
        self.step0 = 0
        self._line = False

    def _print(self, text: str) -> None:
        if self._line:
            self.stream.write("\r\033[K")
            self._line = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._line = True
            self.stream.flush()
        else:
            self._print(text)

    def show(self, event) -> None:
        if isinstance(event, StatusEvent):
            self._print(f"[{event.state.value}] {event.message}".rstrip())
        elif isinstance(event, MetricsEvent) and "train_runtime" in event.metrics:
            m = event.metrics
            loss = f", mean loss {m['train_loss']:.4f}" if "train_loss" in m else ""
            self._print(f"trained {event.step} steps in {m['train_runtime']:.1f}s{loss}")
        elif isinstance(event, MetricsEvent):
            self._bar(self.metrics_line(event))
        elif isinstance(event, CheckpointEvent):
            c = event.checkpoint
            self._print(f"checkpoint{' (final)' if c.final else ''} step {c.step} -> {c.path}")
        elif isinstance(event, LogEvent):
            self._print(event.line if event.level in ("info", "debug") else f"{event.level}: {event.line}")

    def metrics_line(self, e: MetricsEvent) -> str:
        now = time.monotonic()
        if self.t0 is None:
            self.t0, self.step0 = now, e.step
        total = e.total_steps or 0
        width = 24
        done = int(width * e.step / total) if total else 0
        bar = "#" * done + "." * (width - done)
        parts = [f"step {e.step}/{total or '?'} [{bar}]"]
        m = e.metrics
        if "loss" in m:
            parts.append(f"loss {m['loss']:.4f}")
        if "rewards/margins" in m:
            parts.append(f"margin {m['rewards/margins']:+.4f}")
        if "rewards/accuracies" in m:
            parts.append(f"acc {m['rewards/accuracies']:.2f}")
        rate_steps = e.step - self.step0
        if total and rate_steps > 0:
            eta = (now - self.t0) / rate_steps * (total - e.step)
            parts.append(f"eta {eta:.0f}s")
        return "  ".join(parts)

    def close(self) -> None:
        if self._line:
            self.stream.write("\n")
            self._line = False


def jobs_table(records: list[JobRecord], positions: dict[str, tuple[str, int]], gangs: dict[str, GangRecord]) -> str:
    rows = []
    for r in records:
        where = r.owner or "-"
        if r.job_id in positions:
            queue, pos = positions[r.job_id]
            gang = gangs.get(r.job_id)
            if gang is not None and gang.state.value == "forming":
                where = f"forming {len(gang.members)}/{gang.nodes} nodes"
            else:
                where = f"#{pos} in {queue}"
        elif r.spec.resources.nodes > 1 and r.allocation:
            where = f"{r.owner} +{len(r.allocation) - 1} node(s)"
        step = f"{r.step}/{r.total_steps}" if r.total_steps else (str(r.step) if r.step else "-")
        loss = r.last_metrics.get("loss")
        rows.append(
            [
                r.job_id,
                r.spec.kind.value,
                r.state.value,
                step,
                f"{loss:.4f}" if loss is not None else "-",
                f"{r.spec.resources.nodes}x{r.spec.resources.gpus_per_node}",
                where,
                str(r.attempt),
                ago(r.submitted_at),
            ]
        )
    return table(rows, ["JOB", "KIND", "STATE", "STEP", "LOSS", "NODESxGPUS", "AGENT / QUEUE", "ATTEMPT", "SUBMITTED"])


def job_lines(r: JobRecord) -> list[str]:
    """``trl-nats status``: one job, one fact per line."""
    lines = [f"job        {r.job_id} ({r.spec.kind.value}, model {r.spec.model})"]
    lines.append(
        f"state      {r.state.value}" + (" (cancel requested)" if r.cancel_requested and not r.state.terminal else "")
    )
    lines.append(f"attempt    {r.attempt} of {r.spec.max_attempts}")
    lines.append(f"submitted  {ago(r.submitted_at)}; started {ago(r.started_at)}; finished {ago(r.finished_at)}")
    for a in r.allocation:
        lines.append(f"running on {a.agent} (node {a.node}, {'GPUs' if a.gpu_type else 'CPU slots'} {a.gpus})")
    if r.total_steps:
        lines.append(f"progress   step {r.step}/{r.total_steps}")
    if r.last_metrics:
        lines.append("metrics    " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.last_metrics.items())))
    for c in r.checkpoints:
        where = f"{c.location} ({c.bytes or 0:,} bytes)" if c.location else c.path
        lines.append(f"checkpoint step {c.step}{' final' if c.final else ''}: {where}")
    if r.error:
        lines.append(f"error      {r.error}")
    return lines


def agents_table(agents: list[AgentRecord]) -> str:
    rows = []
    for a in agents:
        kinds = {g.name for g in a.gpus}
        mem = sum(g.memory_mib for g in a.gpus)
        util = [g.utilization for g in a.gpus if g.utilization is not None]
        rows.append(
            [
                a.agent_id,
                a.node,
                f"{len(a.gpus)}x {'/'.join(sorted(kinds))}" + (f" {mem // 1024}GiB" if mem else ""),
                f"{len(a.free_gpus)}/{len(a.gpus)}",
                ",".join(a.running_jobs) or "-",
                f"{sum(util) / len(util):.0f}%" if util else "-",
                a.version,
                ago(a.heartbeat_at),
            ]
        )
    return table(rows, ["AGENT", "NODE", "GPUS", "FREE", "RUNNING", "UTIL", "VERSION", "HEARTBEAT"])
