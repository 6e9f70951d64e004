"""One DPO job across two "nodes": two agents in their own network namespaces, a real cross-node torchrun.

Each agent runs in its own namespace with its own address and state dir, reaching the
nats-server on the bridge between them; the gang's rank 0 hosts the rendezvous on its
namespace address and gloo talks over the veths. The same job on one node with two
processes (same world size, same per-device batch: the same math) must give the same
losses. Without root or netns support the two agents share loopback instead, which still
proves the protocol but not the addressing.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from netns import available
from support import SHIPPED
from support.fleet import Fleet

from trl_nats.client import Client
from trl_nats.messages import (
    CheckpointEvent,
    JobSpec,
    JobState,
    LogEvent,
    MetricsEvent,
    Resources,
    StatusEvent,
    TrainingParams,
)
from trl_nats.plot import curves, plot_job

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(tmp_path: Path):
    f = Fleet(tmp_path, 2 if available() else 0)
    try:
        yield f
    finally:
        f.close()


def _spec(job_id: str, model: Path, dataset, resources: Resources) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        model=str(model),
        dataset=dataset,
        resources=resources,
        params=TrainingParams(
            max_steps=6, per_device_batch_size=2, learning_rate=5e-4, max_length=160, beta=0.1, precompute_ref=True
        ),
        max_attempts=1,
    )


async def test_dpo_across_two_namespaced_nodes_matches_one_node_with_two_processes(fleet: Fleet, tiny_model: Path):
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()[:48]]
    agents = {name: fleet.start_agent(name, slots=1, node=i) for i, name in enumerate(("node-0", "node-1"))}
    client = await Client.connect(fleet.settings)
    try:
        dataset = await client.upload_dataset(rows)
        job = await client.submit(
            _spec("dpo-2nodes", tiny_model, dataset, Resources(nodes=2, gpus_per_node=1)), check_fleet=False
        )
        two = await job.wait(timeout=1200)
        two_events = [e async for e in job.events()]
        assert two.state is JobState.completed, two.error

        # Again, with the leader's node holding the reference log-probs cached by the first run and
        # the other node not (each node has its own disk). To make that agent lead, it is alone when
        # the job is queued; the other one comes back while its gang forms.
        leader = two.owner
        member = "node-1" if leader == "node-0" else "node-0"
        agents[member].stop()
        again = await client.submit(
            _spec("dpo-2nodes-cached", tiny_model, dataset, Resources(nodes=2, gpus_per_node=1)), check_fleet=False
        )
        await _wait_for_gang(client, "dpo-2nodes-cached", leader)
        fleet.start_agent(member, slots=1, node=int(member[-1]))
        cached = await again.wait(timeout=1200)
        cached_events = [e async for e in again.events()]
        assert cached.state is JobState.completed, cached.error
        assert cached.owner == leader
        # the single-node comparison: an agent with two slots, started only now so it cannot join the gang
        fleet.start_agent("one-node", slots=2, node=None)
        single = await client.submit(
            _spec("dpo-1node", tiny_model, dataset, Resources(nodes=1, gpus_per_node=2)), check_fleet=False
        )
        one = await single.wait(timeout=1200)
        one_events = [e async for e in single.events()]
        assert one.state is JobState.completed, one.error
    finally:
        await client.close()

    # the gang: two agents, one node each, node rank 0 (the leader) relays rank 0's events
    assert sorted(a.agent for a in two.allocation) == ["node-0", "node-1"]
    claim = next(e for e in two_events if isinstance(e, StatusEvent) and e.state is JobState.in_progress)
    assert "gang of 2 nodes" in claim.message, claim.message
    if fleet.ns:
        # each node was reached at its own namespace address
        for addr in fleet.ns.addrs:
            assert addr in "\n".join(fleet.logs()), f"no agent advertised {addr}"
    ckpts = [e.checkpoint for e in two_events if isinstance(e, CheckpointEvent)]
    assert ckpts and ckpts[-1].final and Path(ckpts[-1].path).is_dir()
    assert ckpts[-1].node == two.owner, "the final model is written on the leader's node"

    two_losses = _losses(two_events)
    one_losses = _losses(one_events)
    assert sorted(two_losses) == list(range(1, 7)) and one_losses.keys() == two_losses.keys()
    worst = max(abs(one_losses[s] - two_losses[s]) for s in two_losses)
    assert worst < 1e-4, f"two nodes and one node differ by up to {worst}: {two_losses} vs {one_losses}"
    lines = [e.line for e in cached_events if isinstance(e, LogEvent)]
    assert any("read from" in line for line in lines), "the second run did not use the cached reference"
    cached_losses = _losses(cached_events)
    assert cached_losses.keys() == two_losses.keys()
    drift = max(abs(cached_losses[s] - two_losses[s]) for s in two_losses)
    assert drift < 1e-6, f"a cached reference must train on the same inputs: {cached_losses} vs {two_losses}"

    # the real DPO curves draw (the CLI's `trl-nats plot` is tested in test_fleet.py)
    png = plot_job("dpo-2nodes", two_events, fleet.tmp / "dpo-2nodes.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert set(curves(two_events)) == {"loss", "rewards/margins", "rewards/accuracies"}


async def _wait_for_gang(client: Client, job_id: str, leader: str) -> None:
    for _ in range(3000):
        if any(g.job_id == job_id and g.leader == leader for g in await client.list_gangs()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no gang for {job_id} led by {leader}")


def _losses(events) -> dict[int, float]:
    return {e.step: e.metrics["loss"] for e in events if isinstance(e, MetricsEvent) and "loss" in e.metrics}
