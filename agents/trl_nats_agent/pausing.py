"""The agent's half of pausing and resuming a job (the client's half: ``trl_nats/pausing.py``; the recipe's:
``recipes/pause.py``).

While a job it runs is ``pausing`` (the keepalive reads the record every second), the agent keeps the
flag file ``OUTPUT_DIR/.trl_nats_pause`` in place; rank 0 sees it at the next step boundary, every
rank saves ``checkpoint-N`` and stops, rank 0 writes ``OUTPUT_DIR/.trl_nats_paused`` and every rank
exits 0. The agent stores that checkpoint like any other (it becomes the job's resume point), and the
attempt's outcome (``outcome.py``) is ``paused``: no owner, the message acked (a paused job is in no
queue), the GPUs released, the attempt not counted as a failed one.

Resuming a multi-node job: every node fetches the one stored checkpoint from the object store (or finds it in
the shared checkpoint directory).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

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
    """``--resume`` on every node of a multi-node job: the record's latest checkpoint if every node can fetch it
    (the object store, or this agent's shared checkpoint directory); else "never" (a checkpoint on one node's
    disk is that node's own, so the nodes could not agree on one). A node that cannot fetch it fails the attempt
    rather than start elsewhere. Each node says on the job's events (``say``) where it starts: the recipe's own
    line comes from rank 0 only, so without it nobody could tell where the other nodes started."""
    latest = (await store.get(job.spec.job_id)).latest_checkpoint
    rank = job.gang.node_rank if job.gang else 0
    if latest is None or not latest.location:
        return "never"
    location = latest.location
    if not checkpoints.shared(location):
        say(
            f"node {rank} ({agent_id}) starts from step 0: checkpoint {latest.step} is at {location}, which not "
            "every node can fetch (store checkpoints in NATS or a shared directory: --checkpoint-store)"
        )
        return "never"
    shared_root = [checkpoints.root] if checkpoints.root is not None else []
    path = await checkpoints.fetch(location, latest.sha256, job.output_dir, shared_root)
    line = f"node {rank} ({agent_id}) resumes from checkpoint {latest.step} ({location})"
    log.info("job %s: %s", job.spec.job_id, line)
    say(line)
    return str(path)
