"""The agent's half of pausing and resuming a job (the client's half: ``trl_nats/pausing.py``; the recipe's:
``recipes/pause.py``).

While a job it runs is ``pausing`` (the keepalive reads the record every second), the agent keeps the
flag file ``OUTPUT_DIR/.trl_nats_pause`` in place; rank 0 sees it at the next step boundary, every
rank saves ``checkpoint-N`` and stops, rank 0 writes ``OUTPUT_DIR/.trl_nats_paused`` and every rank
exits 0. The agent stores that checkpoint like any other (it becomes the job's resume point), and the
attempt's outcome (``outcome.py``) is ``paused``: no owner, the message acked (a paused job is in no
queue), the GPUs released, the attempt not counted as a failed one.

Resuming a multi-node job: every node fetches the one stored checkpoint from the object store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from trl_nats.artifacts.manifest import NATS_SCHEME
from trl_nats.messages import JobRecord, JobState
from trl_nats.store import JobStore
from trl_nats_agent.checkpoints import CheckpointStore
from trl_nats_agent.job import RunningJob
from trl_nats_agent.recipes.contract import PAUSE_FLAG, PAUSED_MARKER

log = logging.getLogger(__name__)


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


def drop_delivery(record: JobRecord) -> bool:
    """A queued message of a paused job is dropped: resume publishes a fresh one."""
    return record.state is JobState.paused


async def gang_resume_point(
    store: JobStore, checkpoints: CheckpointStore, job: RunningJob, *, agent_id: str, say: Callable[[str], None]
) -> str:
    """``--resume`` on every node of a multi-node job: the record's latest checkpoint if it is in the object
    store, which every node can fetch; else "never" (each node's local checkpoints are its own, so the nodes
    could not agree on one). A node that cannot fetch it fails the attempt rather than start elsewhere.
    Each node says on the job's events (``say``) which checkpoint it resumes from: the recipe's own line
    comes from rank 0 only, so without it nobody could tell where the other nodes started."""
    latest = (await store.get(job.spec.job_id)).latest_checkpoint
    if latest is None or not (latest.location or "").startswith(NATS_SCHEME):
        return "never"
    path = await checkpoints.fetch(latest.location or "", latest.sha256, job.output_dir, [])
    rank = job.gang.node_rank if job.gang else 0
    line = f"node {rank} ({agent_id}) resumes from checkpoint {latest.step} ({latest.location})"
    log.info("job %s: %s", job.spec.job_id, line)
    say(line)
    return str(path)
