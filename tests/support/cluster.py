"""The cluster test fixture and the checks every fault test makes afterwards.

A real 3-node JetStream cluster (``trl_nats.server.LocalCluster``: three nats-server
processes on loopback) with every stream, KV bucket and object store at R3. Use it in a
test module with::

    @pytest.fixture
    def nats_cluster(tmp_path):
        yield from local_cluster(tmp_path)

    @pytest.fixture
    def settings(nats_cluster):
        return cluster_settings(nats_cluster)

(``settings`` replaces conftest's single-server one, so ``env_for`` and ``start_agent`` talk
to the cluster too.)
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

from trl_nats.client import Client
from trl_nats.messages import BadMessage, CheckpointEvent, Event, JobRecord, MetricsEvent, decode
from trl_nats.server import LocalCluster, leader_of
from trl_nats.settings import NatsSettings
from trl_nats.subjects import Names

GUARD_S = 600.0  # hang guard for a whole scenario on a busy 2-core machine


def local_cluster(tmp_path: Path, size: int = 3):
    cluster = LocalCluster(tmp_path / "cluster", size).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def cluster_settings(cluster: LocalCluster) -> NatsSettings:
    # TTL 15 s (the default) outlasts an election (~5 s) plus a beat; pings notice a frozen node in ~6 s
    return NatsSettings(servers=cluster.servers, replicas=min(3, len(cluster.nodes)), agent_ttl_s=15.0)


def streams(names: Names) -> dict[str, str]:
    """What a fault test can take the leader of, by short name → the JetStream stream behind it."""
    return {
        "events": names.events_stream,
        "submissions": names.jobs_stream,
        "jobs-kv": f"KV_{names.jobs_bucket}",
        "agents-kv": f"KV_{names.agents_bucket}",
        "artifacts": f"OBJ_{names.artifacts_store}",
    }


async def retrying(call, what: str, guard: float = 120.0, every: float = 0.3):
    """``await call()`` until it stops raising (reads during a failover); a hang guard only."""
    deadline = time.monotonic() + guard
    while True:
        try:
            return await call()
        except AssertionError:
            raise
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {what} (last error {type(exc).__name__}: {exc})") from exc
            await asyncio.sleep(every)


async def wait_for(predicate, what: str, guard: float = GUARD_S, every: float = 0.3):
    """Poll ``predicate`` until truthy; errors during a failover count as "not yet"."""
    deadline = time.monotonic() + guard
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:
            last = exc
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


async def leader(client: Client, stream: str) -> str:
    async def ask():
        return await leader_of(client.js, stream)

    return await wait_for(ask, f"a leader of {stream}", guard=60)


async def all_events(client: Client, subject: str | None = None) -> list[tuple[str | None, Event]]:
    """Every message in the events stream (or under ``subject``) from the start: (Nats-Msg-Id, event)."""

    async def read():
        sub = await client.js.subscribe(subject or client.names.events_all, ordered_consumer=True)
        out: list[tuple[str | None, Event]] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1)
                except Exception:
                    return out
                try:
                    out.append(((msg.headers or {}).get("Nats-Msg-Id"), decode(msg.data, Event)))
                except BadMessage:
                    continue
        finally:
            await sub.unsubscribe()

    return await retrying(read, "reading the events stream")


def duplicated_ids(events: list[tuple[str | None, Event]]) -> list[str]:
    counts = collections.Counter(i for i, _ in events if i)
    return sorted(i for i, n in counts.items() if n > 1)


def history_problems(record: JobRecord, events: list[tuple[str | None, Event]], steps: int | None) -> list[str]:
    """What is wrong with one job's history (``events`` from :func:`all_events`): each step's metrics
    exactly once (when ``steps`` is given), every checkpoint its record lists, and no gap in the numbers
    of each claim's events (the agent numbers a claim's events 1, 2, 3 ... in its Nats-Msg-Ids)."""
    problems = []
    mine = [(i, e) for i, e in events if e.job_id == record.job_id]
    if steps is not None:
        metric_steps = [e.step for _, e in mine if isinstance(e, MetricsEvent) and "loss" in e.metrics]
        if sorted(metric_steps) != list(range(1, steps + 1)):
            missing = sorted(set(range(1, steps + 1)) - set(metric_steps))
            twice = sorted(s for s, n in collections.Counter(metric_steps).items() if n > 1)
            problems.append(f"{record.job_id}: metrics steps missing {missing}, twice {twice}")
    announced = sorted((e.checkpoint.step, e.checkpoint.final) for _, e in mine if isinstance(e, CheckpointEvent))
    listed = sorted((c.step, c.final) for c in record.checkpoints)
    if announced != listed:
        problems.append(f"{record.job_id}: checkpoints in events {announced} but in the record {listed}")
    by_run: dict[str, list[int]] = collections.defaultdict(list)
    for msg_id, _ in mine:
        parts = (msg_id or "").rsplit(".", 2)  # <job>.<run>.<seq>; the client's own are <job>.<what>
        if len(parts) == 3 and parts[0] == record.job_id and parts[2].isdigit() and int(parts[2]) < 10**9:
            by_run[parts[1]].append(int(parts[2]))  # a larger number is a timestamp, not a count
    for run, seqs in by_run.items():
        if sorted(seqs) != list(range(1, len(seqs) + 1)):
            problems.append(f"{record.job_id}: claim {run} events have gaps or repeats: {sorted(seqs)}")
    return problems
