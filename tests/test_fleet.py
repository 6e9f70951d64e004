"""The fleet as a user sees it: routing by shape, rejection at submission, heartbeats that expire,
queue positions, the Prometheus endpoint and the training-curve plot. Real agents, real nats-server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from support import NOOP, ROWS, agents_up, wait_for

from trl_nats.client import Client, Unschedulable
from trl_nats.messages import JobSpec, JobState, Resources
from trl_nats.ports import free_port
from trl_nats.store import JobNotFound

pytestmark = pytest.mark.integration


def _spec(job_id: str, dataset, gpus: int = 1, nodes: int = 1, max_attempts: int = 3, **labels: str) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        model="unused",
        dataset=dataset,
        resources=Resources(nodes=nodes, gpus_per_node=gpus),
        max_attempts=max_attempts,
        labels={f"noop.{k}": v for k, v in labels.items()},
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trl_nats.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_routing_by_shape_sharing_a_big_node_and_rejecting_what_nothing_fits(settings, start_agent, env_for):
    start_agent("big", slots=2, recipe=NOOP)
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 1), "the big agent to heartbeat")
        ds = await client.upload_dataset(ROWS)
        # two one-slot jobs share the two-slot node: they run at the same time
        shared = [await client.submit(_spec(f"share-{i}", ds, steps="12", step_s="0.25")) for i in range(2)]
        a, b = [await j.wait(timeout=300) for j in shared]
        assert a.state is b.state is JobState.completed
        assert a.allocation[0].agent == b.allocation[0].agent == "big"
        assert sorted(a.allocation[0].gpus + b.allocation[0].gpus) == [0, 1]
        assert a.started_at < b.finished_at and b.started_at < a.finished_at, "the two jobs did not overlap"

        start_agent("small", slots=1, recipe=NOOP)
        await wait_for(lambda: agents_up(client, 2), "the small agent to heartbeat")
        jobs = [await client.submit(_spec(f"two-{i}", ds, gpus=2, steps="3")) for i in range(2)]
        jobs += [await client.submit(_spec(f"one-{i}", ds, gpus=1, steps="3", step_s="0.2")) for i in range(4)]
        records = [await j.wait(timeout=300) for j in jobs]
        assert all(r.state is JobState.completed for r in records), [r.error for r in records]
        for r in records[:2]:
            assert r.allocation[0].agent == "big", f"{r.job_id} needs 2 slots but ran on {r.allocation[0].agent}"

        # nothing in this fleet has 3 slots, 3 nodes, or 2 nodes with 2 slots each: rejected, never queued
        for job_id, gpus, nodes in (("too-wide", 3, 1), ("too-many-nodes", 1, 3), ("two-big-nodes", 2, 2)):
            with pytest.raises(Unschedulable, match="no agent in the fleet can run this job") as err:
                await client.submit(_spec(job_id, ds, gpus=gpus, nodes=nodes))
            assert f"pool n{nodes}g{gpus}any" in str(err.value)
            with pytest.raises(JobNotFound):
                await client.job(job_id).status()
        # two nodes of one slot each fit (big and small can each host one)
        assert (await client.submit(_spec("two-small-nodes", ds, nodes=2, steps="2"))).id
        assert (await client.job("two-small-nodes").wait(timeout=300)).state is JobState.completed
        out = _cli(env_for(), "submit", "--model", "unused", "--gpus", "3", "--job-id", "cli-too-wide")
        assert out.returncode == 2 and "no agent in the fleet can run this job" in out.stderr, out.stderr
        assert "big (2x cpu)" in out.stderr and "small (1x cpu)" in out.stderr
    finally:
        await client.close()


async def test_agents_disappear_after_their_ttl_and_waiting_jobs_show_their_queue_position(
    settings, start_agent, env_for
):
    agent = start_agent("short-lived", slots=1, recipe=NOOP)
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 1), "the agent to heartbeat")
        out = _cli(env_for(), "agents")
        assert out.returncode == 0 and "short-lived" in out.stdout and "1/1" in out.stdout, out.stdout
        agent.stop(signal.SIGKILL)  # no goodbye: only the TTL can remove it
        killed = time.monotonic()
        assert [a.agent_id for a in await client.list_agents()] == ["short-lived"], "gone before its TTL"
        await wait_for(_no_agents(client), "the dead agent's heartbeat to expire", timeout=120)
        assert time.monotonic() - killed >= settings.agent_ttl_s - 3.5  # last beat <=1s before the kill
        assert "no agents" in _cli(env_for(), "agents").stdout

        # with no agent up at all, jobs are accepted (agents may be starting) and wait in order
        for i in range(3):
            out = _cli(env_for(), "submit", "--model", "unused", "--job-id", f"waiting-{i}", "--gpus", "1")
            assert out.returncode == 0, out.stderr
            assert "no agent is up" in out.stderr
        out = _cli(env_for(), "jobs")
        for i in range(3):
            assert re.search(rf"waiting-{i}\s.*#{i + 1} in n1g1any", out.stdout), out.stdout
    finally:
        await client.close()


def _no_agents(client: Client):
    async def check() -> bool:
        return not await client.list_agents()

    return check


async def test_prometheus_counters_move_with_real_jobs_and_plot_draws_the_curves(
    settings, start_agent, env_for, tmp_path
):
    port = free_port()
    start_agent("observed", slots=2, recipe=NOOP, extra=["--metrics-port", str(port), "--metrics-host", "127.0.0.1"])
    client = await Client.connect(settings)
    try:
        await wait_for(lambda: agents_up(client, 1), "the agent to heartbeat")
        before = _scrape(port)
        assert before["trl_nats_agent_gpus"] == 2 and before["trl_nats_agent_claims_total"] == 0
        ds = await client.upload_dataset(ROWS)
        long_job = await client.submit(_spec("observed-long", ds, steps="40", step_s="0.1"))

        async def training() -> bool:
            return (await long_job.status()).step > 0

        await wait_for(training, "the long job to report steps", timeout=300)
        during = _scrape(port)
        assert during["trl_nats_agent_jobs_running"] == 1 and during["trl_nats_agent_gpus_busy"] == 1
        flaky = await client.submit(_spec("observed-flaky", ds, max_attempts=2, steps="3", fail="first"))
        records = [await long_job.wait(timeout=300), await flaky.wait(timeout=300)]
        assert [r.state for r in records] == [JobState.completed, JobState.completed]
        after = _scrape(port)
        assert after["trl_nats_agent_claims_total"] == 3  # the long job, and the flaky one twice
        assert after["trl_nats_agent_job_failures_total"] == 1
        assert after["trl_nats_agent_job_retries_total"] == 1
        assert after['trl_nats_agent_jobs_finished_total{state="completed"}'] == 2
        assert after["trl_nats_agent_events_relayed_total"] >= 40 + 3 + 3
        assert after["trl_nats_agent_claim_seconds_count"] == 3
        assert after["trl_nats_agent_jobs_running"] == 0 and after["trl_nats_agent_gpus_busy"] == 0

        png = tmp_path / "curves" / "observed-long.png"
        out = _cli(env_for(), "plot", "observed-long", "-o", str(png))
        assert out.returncode == 0, out.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image

        height, width = matplotlib.image.imread(png).shape[:2]
        assert (width, height) == (800, 900)
        missing = _cli(env_for(), "plot", "no-such-job", "-o", str(tmp_path / "x.png"))
        assert missing.returncode == 2 and "no job with id" in missing.stderr
    finally:
        await client.close()


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_gpu_utilisation_is_read_again_for_each_heartbeat(tmp_path, monkeypatch):
    from trl_nats_agent.capacity import discover_gpus, refresh_utilization

    smi = tmp_path / "nvidia-smi"
    reading = tmp_path / "util"
    smi.write_text(f'#!/bin/sh\nu=$(cat {reading})\necho "0, NVIDIA H100 80GB HBM3, 81559, $u"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    reading.write_text("7")
    gpus = discover_gpus()
    assert [(g.name, g.memory_mib, g.utilization) for g in gpus] == [("NVIDIA H100 80GB HBM3", 81559, 7.0)]
    reading.write_text("93")
    assert refresh_utilization(gpus)[0].utilization == 93.0
