"""How the agent reports a checkpoint rank 0 wrote: stored, announced and recorded, or said why not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from trl_nats_agent.checkpoints import StoredCheckpoint
from trl_nats_agent.job import RunningJob
from trl_nats_agent.reporting import Progress

from trl_nats import retry
from trl_nats.messages import Checkpoint, CheckpointEvent, DatasetRef, JobRecord, JobSpec, JobState, LogEvent

SHA = "0" * 64


class Events:
    def __init__(self) -> None:
        self.sent: list = []

    def emit(self, spec, attempt, event, job=None, *, run=None) -> None:
        self.sent.append(event)


class Store:
    """The job record, changed as ``JobStore.transition`` changes it."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record

    async def transition(self, job_id, to, *, owner=None, attempt=None, change=None, bound_s=None):
        self.bound_s = bound_s
        fields = change(self.record) if change else {}
        self.record = JobRecord(**{**{f: getattr(self.record, f) for f in self.record.__struct_fields__}, **fields})
        return self.record


class Checkpoints:
    def __init__(self, fail: BaseException | None) -> None:
        self.fail = fail

    async def store(self, job_id: str, path: Path, step: int | None = None) -> StoredCheckpoint:
        if self.fail is not None:
            raise self.fail
        return StoredCheckpoint(f"nats://trl_artifacts/{job_id}/{path.name}", SHA, 1234)


class Metrics:
    def event_relayed(self) -> None: ...


def _setup(tmp_path: Path, fail: BaseException | None):
    spec = JobSpec(job_id="j1", model="m", dataset=DatasetRef(object="sha256-" + SHA, sha256=SHA, rows=1, bytes=1))
    record = JobRecord(job_id="j1", spec=spec, state=JobState.in_progress, owner="a1", attempt=1)
    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    job = RunningJob(spec=spec, attempt=1, msg=None, gpus=[0], workdir=tmp_path, output_dir=out)
    events, store = Events(), Store(record)
    lost: list = []

    async def on_lost_claim(j) -> None:
        lost.append(j)

    progress = Progress(events, store, Checkpoints(fail), Metrics(), agent_id="a1", on_lost_claim=on_lost_claim)
    ckpt = Checkpoint(step=2, epoch=0.5, path=str(out / "checkpoint-2"), node="n1")
    return progress, job, events, store, CheckpointEvent(job_id="j1", attempt=1, checkpoint=ckpt)


async def _relay(progress: Progress, job: RunningJob, event: CheckpointEvent) -> None:
    progress.on_training_event(job, event)
    await asyncio.gather(*job.checkpoint_tasks)  # the task must end normally, whatever storing raised


@pytest.mark.parametrize(
    "fail", [ValueError("manifest mismatch"), RuntimeError("object store went away"), KeyError("bucket")]
)
def test_a_checkpoint_that_cannot_be_stored_is_said_announced_and_recorded(tmp_path, fail):
    progress, job, events, store, event = _setup(tmp_path, fail)
    asyncio.run(_relay(progress, job, event))
    errors = [e for e in events.sent if isinstance(e, LogEvent) and e.level == "error"]
    assert len(errors) == 1
    assert "checkpoint-2 (step 2) not stored" in errors[0].line
    assert type(fail).__name__ in errors[0].line
    announced = [e for e in events.sent if isinstance(e, CheckpointEvent)]
    assert len(announced) == 1 and announced[0].checkpoint.location is None
    assert [c.step for c in store.record.checkpoints] == [2]
    assert store.record.latest_checkpoint is None  # not stored: no one can resume from it


def test_a_stored_checkpoint_is_announced_with_its_location_and_becomes_the_latest(tmp_path):
    progress, job, events, store, event = _setup(tmp_path, None)
    asyncio.run(_relay(progress, job, event))
    assert not [e for e in events.sent if isinstance(e, LogEvent)]
    (announced,) = [e for e in events.sent if isinstance(e, CheckpointEvent)]
    assert announced.checkpoint.location == "nats://trl_artifacts/j1/checkpoint-2"
    assert announced.checkpoint.bytes == 1234
    assert store.record.latest_checkpoint.location == "nats://trl_artifacts/j1/checkpoint-2"
    assert store.bound_s == retry.RECORD_BOUND_S  # recording it rides out a broker restart
