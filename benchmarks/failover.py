"""Failover on a local 3-node JetStream cluster: how long writes stall, and how much training is lost.

For each kind of node loss (SIGKILL of the node leading the events stream, the submissions stream,
the jobs KV, the agents KV or the artifacts object store; SIGSTOP of the events leader for 10 s; and
SIGKILL of a node that leads nothing we probe, as the baseline), over several runs:

- events stored again: from the kill until a publish to the events stream is acknowledged
  (a probe publishes every 50 ms, each with a 0.5 s ack timeout, no retry helper);
- record writable again: the same for a compare-and-set update of a record in the jobs KV;
- steps lost: a real agent runs a no-op training job (40 steps of 0.15 s, a checkpoint every 5
  steps stored in the artifacts object store) across the fault; counted are steps whose metrics
  event is missing from the job's history and steps trained twice (a retried attempt), and the
  attempt the job completed on.

    python benchmarks/failover.py --runs 3

Prints one table (p50 and max per fault) and writes it as JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "agents")]

from nats.js.errors import KeyWrongLastSequenceError  # noqa: E402

from trl_nats import retry  # noqa: E402
from trl_nats.client import Client  # noqa: E402
from trl_nats.messages import JobSpec, MetricsEvent  # noqa: E402
from trl_nats.server import LocalCluster, leader_of  # noqa: E402
from trl_nats.settings import NatsSettings  # noqa: E402

FAULTS = ["events", "submissions", "jobs-kv", "agents-kv", "artifacts", "freeze-events", "follower"]
STEPS, STEP_S, SAVE_EVERY = 40, 0.15, 5
FREEZE_S = 10.0


def stream_for(client: Client, fault: str) -> str:
    n = client.names
    return {
        "events": n.events_stream,
        "freeze-events": n.events_stream,
        "submissions": n.jobs_stream,
        "jobs-kv": f"KV_{n.jobs_bucket}",
        "agents-kv": f"KV_{n.agents_bucket}",
        "artifacts": f"OBJ_{n.artifacts_store}",
    }.get(fault, n.events_stream)


async def until_leader(js, stream: str, not_on: set[str] | None = None) -> str:
    while True:
        try:
            name = await leader_of(js, stream)
            if name and (not not_on or name not in not_on):
                return name
        except Exception:
            pass
        await asyncio.sleep(0.1)


async def reading(call):
    """A read or setup call, retried while the cluster is electing (only the probes are timed)."""
    while True:
        try:
            return await call()
        except Exception as exc:
            if not retry.transient(exc):
                raise
            await asyncio.sleep(0.2)


async def probe(write, stop: asyncio.Event, since: list[float]) -> float | None:
    """Seconds from ``since[0]`` (the kill) to the first successful ``write()`` after it."""
    while not stop.is_set():
        t = time.monotonic()
        try:
            await write()
            if since and t >= since[0]:
                return time.monotonic() - since[0]
        except Exception:
            pass
        await asyncio.sleep(0.05)
    return None


async def one_run(cluster: LocalCluster, client: Client, fault: str, run: int, agent_ok) -> dict:
    js = client.js
    kv = client.topo.jobs
    ref = await reading(lambda: client.upload_dataset([{"prompt": "p", "chosen": "a", "rejected": "b"}]))
    job_id = f"{fault}-{run}"
    labels = {"noop.steps": str(STEPS), "noop.step_s": str(STEP_S), "noop.save_every": str(SAVE_EVERY)}
    await reading(lambda: client.submit(JobSpec(job_id=job_id, model="unused", dataset=ref, labels=labels)))
    while (await reading(lambda: client.store.get(job_id))).step < 5:
        await asyncio.sleep(0.1)

    probe_key = f"probe-{fault}-{run}"
    revision = [await reading(lambda: kv.put(probe_key, b"0"))]
    counter = [0]

    async def event_write():
        counter[0] += 1
        await js.publish(
            client.names.event(client.names.events(probe_key), "log"),
            b"{}",
            timeout=0.5,
            headers={"Nats-Msg-Id": f"{probe_key}.{counter[0]}"},
        )

    async def record_write():
        try:
            revision[0] = await asyncio.wait_for(kv.update(probe_key, str(time.time()).encode(), last=revision[0]), 0.5)
        except KeyWrongLastSequenceError:  # an earlier try landed after its timeout: take its revision
            revision[0] = (await asyncio.wait_for(kv.get(probe_key), 0.5)).revision
            raise

    stream = stream_for(client, fault)
    leaders = {await until_leader(js, s) for s in {client.names.events_stream, f"KV_{client.names.jobs_bucket}"}}
    if fault == "follower":
        victim = next(n.name for n in cluster.nodes if n.name not in leaders)
    else:
        victim = await until_leader(js, stream)
    stop = asyncio.Event()
    since: list[float] = []
    probes = [asyncio.create_task(probe(w, stop, since)) for w in (event_write, record_write)]
    await asyncio.sleep(0.3)  # both probes writing
    since.append(time.monotonic())
    if fault == "freeze-events":
        cluster.freeze(victim)
    else:
        cluster.kill(victim)
    done, _ = await asyncio.wait(probes, timeout=120)
    stop.set()
    events_s, record_s = (p.result() if p in done else None for p in probes)
    if fault == "freeze-events":
        await asyncio.sleep(max(0.0, FREEZE_S - (time.monotonic() - since[0])))
        cluster.thaw(victim)
    else:
        await asyncio.to_thread(cluster.restart, victim)
    await asyncio.to_thread(cluster.wait_healthy)
    while not (record := await reading(lambda: client.store.get(job_id))).state.terminal:
        await asyncio.sleep(0.2)

    async def replay():
        return [e async for e in client.job(job_id).events()]

    history = await reading(replay)
    steps = [e.step for e in history if isinstance(e, MetricsEvent) and "loss" in e.metrics]
    missing = len(set(range(1, STEPS + 1)) - set(steps))
    retrained = len(steps) - len(set(steps))
    assert agent_ok(), "the agent died"
    return {
        "fault": fault,
        "victim": victim,
        "events_s": events_s,
        "record_s": record_s,
        "steps_missing": missing,
        "steps_retrained": retrained,
        "attempt": record.attempt,
        "state": record.state.value,
    }


def _fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    return f"{statistics.median(got):5.2f} / {max(got):5.2f}" + ("" if len(got) == len(values) else " (!)")


async def main(args) -> list[dict]:
    state = Path(tempfile.mkdtemp(prefix="trl-failover-"))
    cluster = LocalCluster(state / "cluster", 3).start()
    settings = NatsSettings(servers=cluster.servers, replicas=3)
    env = dict(os.environ, TRL_NATS_SERVERS=",".join(cluster.servers), TRL_NATS_REPLICAS="3")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "agents"), env.get("PYTHONPATH", "")])
    agent_log = open(state / "agent.log", "wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "trl_nats_agent", "--state-dir", str(state / "agent"), "--device", "cpu"]
        + ["--slots", "1", "--agent-id", "bench", "--heartbeat", "1", "--checkpoint-store", "nats"]
        + ["--recipe-override", "trl_nats_agent.recipes.noop"],
        env=env,
        stdout=agent_log,
        stderr=subprocess.STDOUT,
    )
    results: list[dict] = []
    try:
        client = await Client.connect(settings)
        try:
            while not await client.list_agents():
                await asyncio.sleep(0.2)
            for fault in args.faults:
                for run in range(args.runs):
                    r = await one_run(cluster, client, fault, run, lambda: agent.poll() is None)
                    print(json.dumps(r), flush=True)
                    results.append(r)
        finally:
            await client.close()
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
        agent_log.close()
        cluster.stop()
    print(f"\nfailover on a local 3-node cluster (R3), {args.runs} run(s) per fault; seconds p50 / max")
    print(f"{'fault':<14} {'events stored again':>20} {'record writable':>18} {'steps lost':>10} {'attempts':>9}")
    for fault in args.faults:
        rs = [r for r in results if r["fault"] == fault]
        lost = sum(r["steps_missing"] + r["steps_retrained"] for r in rs)
        attempts = ",".join(str(r["attempt"]) for r in rs)
        print(
            f"{fault:<14} {_fmt([r['events_s'] for r in rs]):>20} {_fmt([r['record_s'] for r in rs]):>18} "
            f"{lost:>10} {attempts:>9}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--faults", nargs="+", default=FAULTS, choices=FAULTS)
    p.add_argument("--json", help="also write the per-run results here")
    asyncio.run(main(p.parse_args()))
