"""Broker node faults on a real 3-node JetStream cluster (R3 streams, KV buckets and object stores).

Two real agents run no-op trainings under real torchrun (metrics every step, a checkpoint
every few steps stored in the artifacts object store) while the node leading one of the
events stream, the submissions stream, the jobs KV, the agents KV or the artifacts object
store is SIGKILLed and later restarted, or a node is frozen (SIGSTOP) for longer than an
election and then thawed. A `trl-nats submit` runs during each failover. Afterwards every job
completed on its first attempt with its whole history (each step's metrics once, every
checkpoint its record lists, no gap, no message id twice), the work queue is empty and both
agents are alive; the submission made during the failover completed or was cleanly refused.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
from support import NOOP
from support.cluster import (
    all_events,
    cluster_settings,
    duplicated_ids,
    history_problems,
    leader,
    local_cluster,
    streams,
)
from support.cluster import wait_for as wait_until

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, encode

pytestmark = pytest.mark.integration

ROWS = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(4)]
STEPS = 24
SAVE_EVERY = 4
FREEZE_S = 12.0  # longer than an election (~5 s) and than a client's ping timeout (~6 s)


@pytest.fixture
def nats_cluster(tmp_path):
    yield from local_cluster(tmp_path)


@pytest.fixture
def settings(nats_cluster):
    return cluster_settings(nats_cluster)


def spec(job_id: str, ref, steps: int = STEPS) -> JobSpec:
    labels = {"noop.steps": str(steps), "noop.step_s": "0.2", "noop.save_every": str(SAVE_EVERY)}
    return JobSpec(job_id=job_id, model="unused", dataset=ref, labels=labels, max_attempts=3)


def cli_submit(env: dict[str, str], path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trl_nats.cli", "submit", "--spec", str(path), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("fault", ["events", "submissions", "jobs-kv", "agents-kv", "artifacts", "freeze"])
async def test_jobs_ride_out_the_loss_of_a_leader(fault, settings, nats_cluster, start_agent, env_for, tmp_path):
    agents = [start_agent(f"a{i}", slots=2, recipe=NOOP, extra=["--checkpoint-store", "nats"]) for i in (1, 2)]
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset(ROWS)
        ids = [f"{fault}-{i}" for i in range(3)]  # the fourth slot is the late submission's
        for job_id in ids:
            await client.submit(spec(job_id, ref))

        async def all_training():
            records = [await client.store.get(j) for j in ids]
            return all(r.state is JobState.in_progress and r.step >= 2 for r in records)

        await wait_until(all_training, "every job to be training")
        stream = streams(client.names)["events" if fault == "freeze" else fault]
        victim = await leader(client, stream)

        late = tmp_path / "late.json"
        late.write_bytes(encode(spec(f"{fault}-late", ref, steps=SAVE_EVERY + 1)))
        if fault == "freeze":
            nats_cluster.freeze(victim)
        else:
            nats_cluster.kill(victim)
        killed_at = time.monotonic()
        submit = cli_submit(env_for(), late)

        async def new_leader():
            name = await leader(client, stream)
            return name if name != victim else None

        if fault != "freeze":
            await wait_until(new_leader, f"a new leader of {stream}", guard=120)
        await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - killed_at)) if fault == "freeze" else 2.0)
        if fault == "freeze":
            nats_cluster.thaw(victim)
        else:
            nats_cluster.restart(victim)

        out, err = await asyncio.to_thread(submit.communicate, timeout=300)
        if submit.returncode == 0:
            ids.append(f"{fault}-late")
        else:  # cleanly refused: one sentence saying what was not written, and no job record behind it
            assert "Traceback" not in err and "was NOT written" in err, err
        for job_id in ids:

            async def done(job_id=job_id):
                record = await client.store.get(job_id)
                return record if record.state.terminal else None

            await wait_until(done, f"{job_id} to finish")

        events = await all_events(client)
        assert duplicated_ids(events) == [], "an event was stored twice"
        problems = []
        for job_id in ids:
            record = await client.store.get(job_id)
            steps = SAVE_EVERY + 1 if job_id.endswith("-late") else STEPS
            assert record.state is JobState.completed, (job_id, record.error)
            assert record.attempt == 1 and record.runs == 1, f"{job_id} ran {record.runs} times"
            assert [c.step for c in record.checkpoints] == [*range(SAVE_EVERY, steps, SAVE_EVERY), steps]
            problems += history_problems(record, events, steps)
        assert problems == []
        info = await client.js.stream_info(client.names.jobs_stream)
        assert info.state.messages == 0, "the work queue is not empty"
        assert all(a.proc.poll() is None for a in agents), "an agent died"
        alive = {a.agent_id for a in await client.list_agents()}
        assert alive == {"a1", "a2"}, alive
        print(f"\n{fault}: leader {victim} lost; late submission rc={submit.returncode} {out.strip()}")
    finally:
        await client.close()
