"""Job records, events and checkpoints as the OpenAI API's objects. Pure functions, no I/O.

What the gateway keeps about a job beyond the core's :class:`~trl_nats.messages.JobSpec` travels in
the spec's labels (``openai.*``), so the job record stays the one source of truth: a job is visible
to the key whose namespace is ``openai.namespace``, and nothing else holds it.

Statuses: scheduled -> ``queued``, in_progress -> ``running``, completed -> ``succeeded``, failed,
cancelled (files are checked on upload, so a job never waits in ``validating_files``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from trl_nats.messages import (
    Checkpoint,
    CheckpointEvent,
    Event,
    JobKind,
    JobRecord,
    JobState,
    LogEvent,
    MetricsEvent,
    StatusEvent,
)
from trl_nats_provider.openai.errors import bad_request

NAMESPACE = "openai.namespace"
TRAINING_FILE = "openai.training_file"
VALIDATION_FILE = "openai.validation_file"
SUFFIX = "openai.suffix"
HYPERPARAMETERS = "openai.hyperparameters"
METADATA = "openai.metadata"
REQUEST = "openai.request_sha256"  # with an Idempotency-Key: the request the job was made from

# by the state's value, so a state this table does not name yet shows as itself instead of failing
STATUS = {
    "scheduled": "queued",
    "in_progress": "running",
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "pausing": "running",  # the agent is saving a checkpoint before it stops
    "paused": "paused",
}

# TRL's log names -> the names OpenAI's metrics use (DPO's reward figures keep a plain name)
METRIC_NAMES = {
    "loss": "train_loss",
    "train_loss": "train_loss",
    "eval_loss": "valid_loss",
    "mean_token_accuracy": "train_mean_token_accuracy",
    "eval_mean_token_accuracy": "valid_mean_token_accuracy",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
    "eval_rewards/margins": "valid_reward_margin",
    "eval_rewards/accuracies": "valid_reward_accuracy",
    "num_tokens": "num_tokens",
    "learning_rate": "learning_rate",
}


def status_of(state: JobState) -> str:
    return STATUS.get(state.value, state.value)


def status(record: JobRecord) -> str:
    return status_of(record.state)


def metrics(raw: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in raw.items():
        mapped = METRIC_NAMES.get(name)
        if mapped and isinstance(value, int | float) and math.isfinite(value):
            out[mapped] = float(value)
    return out


def method_name(kind: JobKind) -> str:
    return "dpo" if kind is JobKind.dpo else "supervised"


def location(ckpt: Checkpoint) -> str:
    """Where a checkpoint can be fetched: its stored location (``nats://<bucket>/<job>/<name>`` in the artifact
    store, pulled with ``Client.pull``, or a directory store's path), else the directory the trainer wrote."""
    return ckpt.location or ckpt.path


def final_checkpoint(record: JobRecord) -> Checkpoint | None:
    return next((c for c in reversed(record.checkpoints) if c.final), None)


def _int(ts: float | None) -> int | None:
    return None if ts is None else int(ts)


def job_object(record: JobRecord) -> dict[str, Any]:
    spec = record.spec
    labels = spec.labels
    hyper = json.loads(labels.get(HYPERPARAMETERS, "{}"))
    name = method_name(spec.kind)
    final = final_checkpoint(record)
    error = None
    if record.state is JobState.failed:
        error = {"code": "training_failed", "message": record.error or "the job failed", "param": None}
    done = record.state is JobState.completed
    tokens = record.last_metrics.get("num_tokens")
    return {
        "id": record.job_id,
        "object": "fine_tuning.job",
        "created_at": int(record.submitted_at),
        "finished_at": _int(record.finished_at),
        "status": status(record),
        "error": error,
        "fine_tuned_model": location(final) if done and final else None,
        "model": spec.model,
        "organization_id": labels.get(NAMESPACE, ""),
        "result_files": [],
        "trained_tokens": int(tokens) if done and tokens is not None else None,
        "training_file": labels.get(TRAINING_FILE, ""),
        "validation_file": labels.get(VALIDATION_FILE),
        "hyperparameters": {k: v for k, v in hyper.items() if k != "beta"},
        "method": {"type": name, name: {"hyperparameters": hyper}},
        "metadata": json.loads(labels[METADATA]) if METADATA in labels else None,
        "seed": spec.params.seed,
        "suffix": labels.get(SUFFIX),
        "user_provided_suffix": labels.get(SUFFIX),
        "estimated_finish": None,
        "integrations": None,
    }


# -- events ------------------------------------------------------------------------------------------------


def event_id(seq: int) -> str:
    return f"ftevent-{seq}"


def _status_message(event: StatusEvent) -> tuple[str, str]:
    word = status_of(event.state)
    detail = f": {event.message}" if event.message and event.message != word else ""
    if event.state is JobState.in_progress and event.agent:
        detail = f" on {event.agent} (attempt {event.attempt}){detail}"
    level = "error" if event.state is JobState.failed else "info"
    return level, f"Job {word}{detail}"


def event_object(seq: int, event: Event) -> dict[str, Any]:
    """One stored NATS event (stream sequence ``seq``) as a ``fine_tuning.job.event``."""
    data: dict[str, Any] | None = None
    kind = "message"
    level = "info"
    if isinstance(event, StatusEvent):
        level, message = _status_message(event)
    elif isinstance(event, MetricsEvent):
        kind = "metrics"
        data = {"step": event.step, "total_steps": event.total_steps, "epoch": event.epoch, **metrics(event.metrics)}
        parts = [f"{k}={v:.4g}" for k, v in data.items() if k not in ("step", "total_steps", "epoch")]
        message = f"Step {event.step}/{event.total_steps or '?'}: {', '.join(parts) or 'no metrics'}"
    elif isinstance(event, CheckpointEvent):
        c = event.checkpoint
        data = {"step": c.step, "fine_tuned_model_checkpoint": location(c), **metrics(c.metrics)}
        message = f"{'Final model' if c.final else 'Checkpoint'} at step {c.step}: {location(c)}"
    else:
        assert isinstance(event, LogEvent)
        level = {"warning": "warn", "error": "error"}.get(event.level, "info")
        message = event.line
    return {
        "id": event_id(seq),
        "object": "fine_tuning.job.event",
        "created_at": int(event.ts),
        "level": level,
        "message": message,
        "type": kind,
        "data": data,
    }


# -- checkpoints -------------------------------------------------------------------------------------------


def checkpoint_objects(record: JobRecord) -> list[dict[str, Any]]:
    """Every checkpoint of the job, newest first; one per step (a retried attempt's copy replaces the first)."""
    by_step: dict[tuple[int, bool], Checkpoint] = {}
    for c in record.checkpoints:
        by_step[(c.step, c.final)] = c
    out = []
    for (step, final), c in sorted(by_step.items(), key=lambda kv: (kv[0][0], kv[0][1]), reverse=True):
        m = metrics(c.metrics)
        if "valid_loss" in m:
            m["full_valid_loss"] = m["valid_loss"]  # the whole validation file is evaluated
        if "valid_mean_token_accuracy" in m:
            m["full_valid_mean_token_accuracy"] = m["valid_mean_token_accuracy"]
        out.append(
            {
                "id": f"ftckpt-{record.job_id}-{'final' if final else step}",
                "object": "fine_tuning.job.checkpoint",
                "created_at": int(c.created_at),
                "fine_tuned_model_checkpoint": location(c),
                "fine_tuning_job_id": record.job_id,
                "step_number": step,
                "metrics": {"step": float(step), **m},
            }
        )
    return out


# -- list pages --------------------------------------------------------------------------------------------


def parse_limit(raw: str | None, default: int, maximum: int = 100) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"limit must be a whole number from 1 to {maximum}, got {raw!r}.", "limit") from None
    if not 1 <= limit <= maximum:
        raise bad_request(f"limit must be from 1 to {maximum}, got {limit}.", "limit")
    return limit


def page(
    items: Sequence[dict[str, Any]], after: str | None, limit: int, id_of: Callable[[dict[str, Any]], str] | None = None
) -> dict[str, Any]:
    """OpenAI's cursor page over ``items`` (already in list order): those after the one with id ``after``."""
    get_id = id_of or (lambda item: item["id"])
    start = 0
    if after:
        ids = [get_id(item) for item in items]
        if after not in ids:
            raise bad_request(
                f"after {after!r} is not an id in this list: pass the id of the last item of the previous page.",
                "after",
            )
        start = ids.index(after) + 1
    data = list(items[start : start + limit])
    return {
        "object": "list",
        "data": data,
        "has_more": start + limit < len(items),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
