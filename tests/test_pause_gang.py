"""A multi-node job resumes on every node from the stored checkpoint, not from step 0.

A gang that loses a node: real agents on loopback (separate processes and state dirs), real torchrun
rendezvous, the no-op trainer (it resumes from the step in a checkpoint's completion marker). The node
that replaces the lost one has nothing of the job on its disk: it fetches the checkpoint from the
artifact store.

A real two-node DPO job paused mid-run and resumed as one, on loopback and with every node in its own
network namespace (``tests/netns.py``), its losses equal to an uninterrupted run's.
"""

from __future__ import annotations

import re
import signal

import netns
import pytest
from support import pausing
from support.fleet import Fleet
from support.processes import NOOP
from support.waiting import agents_up, wait_for

from trl_nats.artifacts import MANIFEST_FILE
from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, LogEvent, MetricsEvent, Resources, StatusEvent

pytestmark = pytest.mark.integration

ROWS = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(4)]
STEPS = 200
NO_NETNS = netns.unavailable_reason()  # decided at collection, so a skip costs no baseline run


async def _gang_loses_a_node(settings, start_agent, extra: list[str], steps: int = STEPS):
    """A noop gang of two agents stores checkpoints; its member is killed and a new agent takes its place.
    Returns (the record before the loss, the final record, the job's events, the new agent)."""
    agents = {name: start_agent(name, slots=1, recipe=NOOP, extra=extra) for name in ("n-a", "n-b")}
    async with await Client.connect(settings) as client:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        spec = JobSpec(
            job_id="gang-resume",
            model="unused",
            dataset=await client.upload_dataset(ROWS),
            resources=Resources(nodes=2, gpus_per_node=1),
            max_attempts=3,
            labels={"noop.steps": str(steps), "noop.step_s": "0.1", "noop.save_every": "5"},
        )
        job = await client.submit(spec)

        async def stored():
            r = await job.status()
            return r if r.latest_checkpoint and r.latest_checkpoint.location and r.step >= 6 else None

        before = await wait_for(stored, "a stored checkpoint of the gang", 300)
        member = next(a.agent for a in before.allocation if a.agent != before.owner)
        agents[member].stop(signal.SIGKILL)  # a node is lost: the gang stops and the job is retried as one
        replacement = start_agent("n-c", slots=1, recipe=NOOP, extra=extra)

        record = await job.wait(timeout=600)
        assert record.state is JobState.completed, record.error
        assert record.attempt == 2 and sorted(a.agent for a in record.allocation) == sorted([before.owner, "n-c"])
        events = [e async for e in job.events()]
    claims = [e.attempt for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress]
    assert claims == [1, 2]
    return before, record, events, replacement


@pytest.mark.parametrize("store", ["nats", "shared-dir"])
async def test_gang_that_loses_a_node_resumes_on_both_nodes_from_the_stored_checkpoint(
    settings, start_agent, tmp_path, store
):
    """``store``: the agents' --checkpoint-store, the object store or a directory every node mounts."""
    shared = tmp_path / "shared-checkpoints"
    extra = ["--gang-timeout", "8", "--checkpoint-store", "nats" if store == "nats" else str(shared)]
    before, record, events, replacement = await _gang_loses_a_node(settings, start_agent, extra)
    where = "nats://trl_artifacts" if store == "nats" else str(shared.resolve())
    assert before.latest_checkpoint.location.startswith(f"{where}/gang-resume/checkpoint-")
    second = [e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 2]
    stored_steps = [c.step for c in record.checkpoints if c.location and not c.final and c.step < second[0]]
    assert second and second[0] - 1 in stored_steps and second[0] > 1, "attempt 2 started over from step 0"
    assert second == list(range(second[0], STEPS + 1))
    logs = [e.line for e in events if isinstance(e, LogEvent) and e.attempt == 2]
    assert any("resuming from" in line for line in logs), logs
    # both nodes, not only rank 0's: each says where it starts
    location = f"{where}/gang-resume/checkpoint-{second[0] - 1}"
    other = next(a.agent for a in record.allocation if a.agent != record.owner)
    assert sorted(line for line in logs if "resumes from checkpoint" in line) == [
        f"node 0 ({record.owner}) resumes from checkpoint {second[0] - 1} ({location})",
        f"node 1 ({other}) resumes from checkpoint {second[0] - 1} ({location})",
    ], logs
    if store == "nats":
        # the new node had nothing of this job: it fetched the checkpoint, verified, from the object store
        fetched = replacement.state_dir / "outputs" / "gang-resume" / f"checkpoint-{second[0] - 1}"
        assert (fetched / MANIFEST_FILE).is_file() and (fetched / "trl_nats_complete.json").is_file()


async def test_gang_with_node_local_checkpoints_says_both_nodes_start_over(settings, start_agent):
    """Checkpoints left on the leader's disk (--checkpoint-store local) are no resume point for a gang: the
    retried attempt starts at step 1 on both nodes, and each node says so and why on the job's events."""
    extra = ["--gang-timeout", "8", "--checkpoint-store", "local"]
    before, record, events, _ = await _gang_loses_a_node(settings, start_agent, extra, steps=60)
    ckpt = before.latest_checkpoint
    assert not ckpt.location.startswith("nats://")
    second = [e.step for e in events if isinstance(e, MetricsEvent) and e.attempt == 2]
    assert second == list(range(1, 61))
    logs = [e.line for e in events if isinstance(e, LogEvent) and e.attempt == 2]
    said = sorted(line for line in logs if "starts from step 0" in line)
    assert len(said) == 2 and [line.split()[1] for line in said] == ["0", "1"], logs
    assert all("which not every node can fetch" in line and "--checkpoint-store" in line for line in said), said
    assert not any("resumes from checkpoint" in line for line in logs), logs


# -- a real two-node DPO job paused and resumed as one ------------------------------------------
# Both tests compare with one uninterrupted run of the same job (computed once for the module). The
# loopback test resumes on the agents that paused (each still holds its copy of the checkpoint) and runs
# where network namespaces are not available; the netns test resumes on fresh agents in fresh namespaces.


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model) -> list[tuple[int, float]]:
    return pausing.uninterrupted_losses(tmp_path_factory.mktemp("uninterrupted"), tiny_model)


@pytest.fixture
def loopback_fleet(tmp_path):
    fleet = Fleet(tmp_path, gang_timeout_s=60)
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def netns_fleet(tmp_path):
    fleet = Fleet(tmp_path, 2, gang_timeout_s=60)
    try:
        yield fleet
    finally:
        fleet.close()


async def test_two_node_dpo_paused_and_resumed_as_one_matches_an_uninterrupted_run(
    loopback_fleet, tiny_model, uninterrupted
):
    """Pause reaches every rank on both nodes at the same step; on resume both nodes (the same agents, each
    with its copy of the checkpoint still on disk) continue from the stored checkpoint, and the per-step
    losses equal an uninterrupted two-node run's."""
    fleet = loopback_fleet
    for name in ("n-a", "n-b"):
        fleet.start_agent(name, slots=1)
    async with await Client.connect(fleet.settings) as client:
        await wait_for(lambda: agents_up(client, 2), "both agents to heartbeat")
        job = await client.submit(
            pausing.two_node_spec("gang-paused", tiny_model, await client.upload_dataset(pausing.rows()))
        )
        record = await pausing.pause_mid_run(job)
        ckpt = record.latest_checkpoint
        await pausing.wait_shown_free(fleet, {"n-a", "n-b"})
        assert await client.list_gangs() == []

        await job.resume()
        record = await job.wait(timeout=900)
        assert record.state is JobState.completed, record.error
        assert record.step == pausing.STEPS and sorted(a.agent for a in record.allocation) == ["n-a", "n-b"]
        events = [e async for e in job.events()]

    pausing.assert_same_losses(pausing.losses(events), uninterrupted)
    _assert_resumed_on_both_nodes(events, ckpt, {"n-a", "n-b"})


@pytest.mark.skipif(NO_NETNS is not None, reason=f"two nodes in network namespaces: {NO_NETNS}")
async def test_two_namespaced_nodes_paused_and_resumed_by_fresh_nodes_match_an_uninterrupted_run(
    netns_fleet, tiny_model, uninterrupted
):
    """Two nodes, each an agent in its own network namespace with its own state dir, reaching NATS only over
    the bridge: paused mid-run, their slots shown free, then taken off the network. Two fresh agents in two
    new namespaces, with nothing of the job on their disks, resume it: both fetch the stored checkpoint and
    continue from its step, and the per-step losses equal an uninterrupted run's."""
    fleet = netns_fleet
    ns = fleet.ns
    first = {"node-a": 0, "node-b": 1}
    for name, node in first.items():
        fleet.start_agent(name, slots=1, node=node)
    async with await Client.connect(fleet.settings) as client:
        await wait_for(lambda: agents_up(client, 2), "both namespaced agents to heartbeat", 120)
        job = await client.submit(
            pausing.two_node_spec("netns-paused", tiny_model, await client.upload_dataset(pausing.rows()))
        )
        record = await pausing.pause_mid_run(job)
        ckpt = record.latest_checkpoint
        await pausing.wait_shown_free(fleet, set(first))
        assert await client.list_gangs() == []

        # the first two nodes leave: their agents stop and their namespaces (addresses, links) are deleted
        for name, node in first.items():
            assert fleet.stop_agent(name) == 0
            ns.remove(node)
            assert not ns.exists(node)
        fresh = {"node-c": ns.add(), "node-d": ns.add()}
        for name, node in fresh.items():
            fleet.start_agent(name, slots=1, node=node)

        async def only_fresh():
            return {a.agent_id for a in await client.list_agents()} == set(fresh)

        await wait_for(only_fresh, "only the two fresh agents to be up", 120)
        await job.resume()
        record = await job.wait(timeout=900)
        assert record.state is JobState.completed, record.error
        assert record.step == pausing.STEPS and sorted(a.agent for a in record.allocation) == sorted(fresh)
        events = [e async for e in job.events()]

    pausing.assert_same_losses(pausing.losses(events), uninterrupted)
    _assert_resumed_on_both_nodes(events, ckpt, set(fresh))
    # the old member node's rank wrote its RNG state on its own disk; the stored checkpoint carries it
    old = [fleet.tmp / name / "outputs" / "netns-paused" / f"checkpoint-{ckpt.step}" for name in first]
    member_copy = next(d for d in old if not (d / "trl_nats_complete.json").is_file())
    for name in fresh:
        # nothing of the job was on its disk: it fetched the checkpoint, verified, from the object store, with
        # every rank's RNG state in it (so the fresh member restores rank 1's as a node that kept its files does)
        fetched = fleet.tmp / name / "outputs" / "netns-paused" / f"checkpoint-{ckpt.step}"
        assert (fetched / MANIFEST_FILE).is_file() and (fetched / "trl_nats_complete.json").is_file(), name
        assert (fetched / "rng_state_0.pth").is_file(), name
        assert (fetched / "rng_state_1.pth").read_bytes() == (member_copy / "rng_state_1.pth").read_bytes(), name
    # the resumed gang was formed at the fresh namespaces' addresses (its collectives ran over the bridge)
    logs = "\n".join(fleet.agents[name].log() for name in fresh)
    formed = [line for line in logs.splitlines() if "gang netns-paused attempt 1 formed" in line]
    assert len(formed) == 1 and all(f"@{ns.addrs[node]}" in formed[0] for node in fresh.values()), formed


def _assert_resumed_on_both_nodes(events: list, ckpt, agents: set[str]) -> None:
    """After the pause, every node of the resumed gang said it resumes from the stored checkpoint, rank 0's
    trainer loaded it, and training went on at the step after it (not at step 1)."""
    paused_at = next(i for i, e in enumerate(events) if isinstance(e, StatusEvent) and e.state is JobState.paused)
    after = events[paused_at + 1 :]
    said = [e.line for e in after if isinstance(e, LogEvent) and "resumes from checkpoint" in e.line]
    nodes = [re.fullmatch(r"node (\d+) \((\S+)\) resumes from checkpoint (\d+) \((\S+)\)", line) for line in said]
    assert all(nodes) and len(nodes) == 2, said
    assert sorted(int(m[1]) for m in nodes) == [0, 1] and {m[2] for m in nodes} == agents, said
    assert all(int(m[3]) == ckpt.step and m[4] == ckpt.location for m in nodes), said
    logs = [e.line for e in after if isinstance(e, LogEvent)]
    assert any("resuming from" in line and f"checkpoint-{ckpt.step}" in line for line in logs), logs
    steps = [e.step for e in after if isinstance(e, MetricsEvent) and "loss" in e.metrics]
    assert steps == list(range(ckpt.step + 1, pausing.STEPS + 1)), f"the resumed run trained steps {steps}"
    claims = [e for e in events if isinstance(e, StatusEvent) and e.state is JobState.in_progress]
    assert len(claims) == 2 and all(a in claims[-1].message for a in agents), [c.message for c in claims]
