"""A finishing attempt keeps its JetStream message alive until it is settled."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trl_nats_agent.attempt import keep_message_alive
from trl_nats_agent.job import RunningJob

from trl_nats.messages import DatasetRef, JobSpec

SHA = "0" * 64


class Msg:
    """The part of a JetStream message the pinger uses; ``fail`` pings raise (a broker restart)."""

    def __init__(self, fail: int = 0) -> None:
        self.is_acked = False
        self.pings = 0
        self.fail = fail

    async def in_progress(self) -> None:
        self.pings += 1
        if self.pings <= self.fail:
            raise ConnectionError("broker restarting")

    async def ack_sync(self) -> None:
        self.is_acked = True


def _job(msg: Msg | None) -> RunningJob:
    spec = JobSpec(job_id="j1", model="m", dataset=DatasetRef(object="sha256-" + SHA, sha256=SHA, rows=1, bytes=1))
    return RunningJob(spec=spec, attempt=1, msg=msg, gpus=[0], workdir=Path("."), output_dir=Path("."))


async def _finish_slowly(msg: Msg, job: RunningJob, rounds: int) -> int:
    pinger = asyncio.create_task(keep_message_alive(job, 0.01))
    for _ in range(rounds):  # the final writes and the flush, taking several ping periods
        await asyncio.sleep(0.01)
    await msg.ack_sync()
    pings_at_ack = msg.pings
    await asyncio.sleep(0.05)
    assert pinger.done()  # it stopped by itself once the message was settled
    return pings_at_ack


def test_pings_until_the_message_is_settled_then_stops():
    msg = Msg()
    pings_at_ack = asyncio.run(_finish_slowly(msg, _job(msg), rounds=10))
    assert pings_at_ack >= 3
    assert msg.pings == pings_at_ack


def test_a_failed_ping_does_not_stop_the_pinging():
    msg = Msg(fail=2)
    asyncio.run(_finish_slowly(msg, _job(msg), rounds=10))
    assert msg.pings > 2


def test_no_pings_for_a_lost_claim_or_a_member_without_the_message():
    msg = Msg()
    job = _job(msg)
    job.lost_claim = True
    asyncio.run(asyncio.wait_for(keep_message_alive(job, 0.01), 5))
    assert msg.pings == 0
    asyncio.run(asyncio.wait_for(keep_message_alive(_job(None), 0.01), 5))
