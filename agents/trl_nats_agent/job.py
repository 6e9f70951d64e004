"""One attempt of one job on this node, as the agent tracks it while it runs (data only)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.msg import Msg

from trl_nats.messages import JobSpec
from trl_nats_agent.gang.protocol import GangLaunch
from trl_nats_agent.launcher import TrainingProcess


@dataclass
class RunningJob:
    spec: JobSpec
    attempt: int
    msg: Msg | None  # None on the member nodes of a multi-node job: the leader holds the message
    gpus: list[int]
    workdir: Path
    output_dir: Path
    run: int = 0  # the record's claim counter: numbers this claim's event message ids
    proc: TrainingProcess | None = None
    seq: int = 0
    checkpoint_tasks: list[asyncio.Task] = field(default_factory=list)
    cancel_reason: str | None = None
    lost_claim: bool = False
    handed_back: bool = False
    last_progress_write: float = 0.0
    pending_progress: dict = field(default_factory=dict)
    task: asyncio.Task | None = None
    gang: GangLaunch | None = None  # set for a node of a multi-node job
    gang_stop_reason: str | None = None

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def owns_record(self) -> bool:
        """This agent writes the job's record and settles its message (single-node, or the gang leader)."""
        return self.gang is None or self.gang.leader
