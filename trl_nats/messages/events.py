"""A job's events on NATS, and the lines a job's rank 0 sends the agent that become them."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct, field

from trl_nats.messages.codec import SCHEMA, BadMessage, JobId, NonNegFloat, NonNegInt, Schema, now
from trl_nats.messages.jobs import Checkpoint, JobState


class StatusEvent(Struct, tag="status", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    state: JobState
    agent: str | None = None
    message: str = ""


class MetricsEvent(Struct, tag="metrics", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    step: NonNegInt
    total_steps: NonNegInt | None = None
    epoch: NonNegFloat = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class CheckpointEvent(Struct, tag="checkpoint", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    checkpoint: Checkpoint


class LogEvent(Struct, tag="log", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    level: Literal["debug", "info", "warning", "error"] = "info"
    line: str


Event = StatusEvent | MetricsEvent | CheckpointEvent | LogEvent
EVENT_KINDS = ("status", "metrics", "checkpoint", "log")


# -- what rank 0 sends the agent ------------------------------------------------------
# One JSON object per line on the job's event socket (``TRL_NATS_EVENTS_SOCKET``), ``kind`` naming the event.
# Each is the body of the Event above it without the envelope: the agent's relay knows the job, the attempt and
# the node, and fills them in with :meth:`event`. Lenient where a training process may be sloppy (extra fields
# are ignored, an unknown log level is "info", metrics that are not finite numbers are dropped); the relay drops
# and logs any line these types do not decode.

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_LOG_LINE = 4000


def finite_metrics(values: dict[str, object]) -> dict[str, float]:
    """The numbers JSON can carry: finite ints and floats, as floats (bools and anything else dropped)."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value == value and value not in (float("inf"), float("-inf")):
            out[str(name)] = float(value)
    return out


class RankMetrics(Struct, tag="metrics", tag_field="kind", kw_only=True):
    step: NonNegInt
    total_steps: NonNegInt | None = None
    epoch: float = 0.0
    metrics: dict[str, object] = field(default_factory=dict)

    def event(self, *, job_id: str, attempt: int, node: str) -> MetricsEvent:
        return MetricsEvent(
            job_id=job_id,
            attempt=attempt,
            step=self.step,
            total_steps=self.total_steps,
            epoch=max(0.0, float(self.epoch or 0.0)),
            metrics=finite_metrics(self.metrics),
        )


class RankCheckpoint(Struct, tag="checkpoint", tag_field="kind", kw_only=True):
    step: NonNegInt
    path: str
    epoch: float = 0.0
    metrics: dict[str, object] = field(default_factory=dict)
    final: bool = False

    def event(self, *, job_id: str, attempt: int, node: str) -> CheckpointEvent:
        checkpoint = Checkpoint(
            step=self.step,
            epoch=max(0.0, float(self.epoch or 0.0)),
            path=self.path,
            node=node,
            metrics=finite_metrics(self.metrics),
            final=self.final,
        )
        return CheckpointEvent(job_id=job_id, attempt=attempt, checkpoint=checkpoint)


class RankLog(Struct, tag="log", tag_field="kind", kw_only=True):
    line: str = ""
    level: str = "info"

    def event(self, *, job_id: str, attempt: int, node: str) -> LogEvent:
        level = self.level if self.level in LOG_LEVELS else "info"
        return LogEvent(job_id=job_id, attempt=attempt, level=level, line=self.line[:MAX_LOG_LINE])  # type: ignore[arg-type]


RankEvent = RankMetrics | RankCheckpoint | RankLog


def rank_event(raw: object) -> RankEvent:
    """One parsed line from rank 0 as its typed event; :class:`BadMessage` saying why when it is not one."""
    try:
        return msgspec.convert(raw, RankEvent)  # type: ignore[arg-type]
    except msgspec.ValidationError as exc:
        kind = raw.get("kind") if isinstance(raw, dict) else None
        raise BadMessage(f"bad {kind or 'rank-0'} event: {exc}") from None
