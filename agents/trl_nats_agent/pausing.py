"""The agent's half of pausing a job (the client's half: ``trl_nats/pausing.py``; the recipe's: ``recipes/pause.py``).

While a job it runs is ``pausing`` (the keepalive reads the record every second), the agent keeps the
flag file ``OUTPUT_DIR/.trl_nats_pause`` in place; rank 0 sees it at the next step boundary, every
rank saves ``checkpoint-N`` and stops, rank 0 writes ``OUTPUT_DIR/.trl_nats_paused`` and every rank
exits 0. The agent stores that
checkpoint like any other (it becomes the job's resume point), writes ``paused``, gives the message
back (acked: a paused job is in no queue) and releases the GPUs. The paused attempt does not count
as a failed one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from trl_nats.messages import JobRecord, JobState

from .recipes.contract import PAUSE_FLAG, PAUSED_MARKER


def request_pause(output_dir: Path) -> None:
    """Ask rank 0 to save and stop at its next step (idempotent: called again each keepalive round)."""
    flag = output_dir / PAUSE_FLAG
    if not flag.exists():
        with contextlib.suppress(OSError):
            flag.write_text("pause\n")


def stopped_at_pause(rc: int | None, output_dir: Path) -> bool:
    """The training ended because of a pause (not because it was done)."""
    return rc == 0 and (output_dir / PAUSED_MARKER).is_file()


def paused_fields(record: JobRecord) -> dict:
    """Record fields for a job that stopped at a pause: nobody owns it, and the attempt is given back."""
    return {"owner": None, "allocation": [], "attempt": max(0, record.attempt - 1), "error": None}


def paused_message(record: JobRecord | None, agent_id: str) -> str:
    latest = record.latest_checkpoint if record else None
    at = f" at checkpoint {latest.step} ({latest.location})" if latest and latest.location else ""
    return f"paused by {agent_id}{at}: GPUs released; `trl-nats resume` queues it again"


def drop_delivery(record: JobRecord) -> bool:
    """A queued message of a paused job is dropped: resume publishes a fresh one."""
    return record.state is JobState.paused
