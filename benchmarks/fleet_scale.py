"""Scale of the claim machinery: N queued jobs drained by M simulated agents on one nats-server.

    python benchmarks/fleet_scale.py [--jobs 1000] [--agents 50] [--procs 5]

Every agent is a real :class:`trl_nats_agent.agent.Agent` (its own NATS connection,
heartbeat, one fetch loop per pool, the gang watch, CAS claims, events, acks) with one
slot and the inline no-op trainer (``--recipe-override inline:noop``: the job completes
right after its dataset is in place, no process starts), so what is measured is the
scheduling path, not training. Fifty Python processes would not fit a 2-core machine
well, so the agents run ``--agents / --procs`` to a process, each process one asyncio loop.

All jobs are queued first, then the agent processes start. Printed:
- exactly-once: every job completed, attempt 1, exactly one ``in_progress`` status event,
  and the work queue empty afterwards;
- claim latency p50/p99: message fetched by an agent to its claim committed in KV
  (read from each agent's own metrics);
- drain time: the first claim to the last completion, from the status events' timestamps;
- throughput: jobs per second over the drain.
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


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# -- a worker process: many agents in one event loop ------------------------------


async def run_worker(args: argparse.Namespace) -> None:
    from trl_nats_agent.agent import Agent
    from trl_nats_agent.capacity import cpu_slots
    from trl_nats_agent.settings import INLINE_NOOP, AgentSettings

    from trl_nats.settings import NatsSettings

    settings = NatsSettings(servers=[args.servers], agent_ttl_s=15.0)
    agents = [
        Agent(
            settings,
            AgentSettings(
                state_dir=Path(args.state) / f"{args.name}-{i}",
                device="cpu",
                gpus=cpu_slots(1),
                agent_id=f"{args.name}-{i}",
                node=f"{args.name}-{i}",
                heartbeat_s=3.0,
                recipe_override=INLINE_NOOP,
            ),
        )
        for i in range(args.agents)
    ]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: [a.stop() for a in agents])
    await asyncio.gather(*(a.run() for a in agents))
    out = {
        "claims": sum(a.claims for a in agents),
        "claim_latencies": [x for a in agents for x in a.metrics.claim_latencies],
        "per_agent": {a.id: a.claims for a in agents},
    }
    Path(args.out).write_text(json.dumps(out))


# -- the driver ----------------------------------------------------------------------


async def drive(args: argparse.Namespace) -> None:
    from nats.js.api import DeliverPolicy

    from trl_nats.client import Client
    from trl_nats.messages import JobSpec, JobState, Resources, StatusEvent, decode
    from trl_nats.server import EmbeddedNats
    from trl_nats.settings import NatsSettings

    state = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    server = EmbeddedNats(state / "nats").start()
    settings = NatsSettings(servers=[server.url])
    procs: list[subprocess.Popen] = []
    try:
        client = await Client.connect(settings)
        ds = await client.upload_dataset([{"prompt": "p", "chosen": "a", "rejected": "b"}])
        t0 = time.perf_counter()
        for i in range(args.jobs):
            spec = JobSpec(job_id=f"job-{i:05d}", model="unused", dataset=ds, resources=Resources(gpus_per_node=1))
            await client.submit(spec, check_fleet=False)
        submit_s = time.perf_counter() - t0
        print(f"queued {args.jobs} jobs in {submit_s:.1f}s ({args.jobs / submit_s:.0f} jobs/s through Client.submit)")

        claims: dict[str, list[StatusEvent]] = {}
        completed: dict[str, StatusEvent] = {}
        done = asyncio.Event()

        async def on_status(msg) -> None:
            e = decode(msg.data, StatusEvent)
            if e.state is JobState.in_progress:
                claims.setdefault(e.job_id, []).append(e)
            elif e.state is JobState.completed:
                completed[e.job_id] = e
                if len(completed) == args.jobs:
                    done.set()

        sub = await client.js.subscribe(
            f"{client.names.prefix}.events.*.status",
            cb=on_status,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        per_proc = [args.agents // args.procs + (1 if i < args.agents % args.procs else 0) for i in range(args.procs)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "agents"), *filter(None, [env.get("PYTHONPATH")])])
        started = time.perf_counter()
        for i, n in enumerate(per_proc):
            cmd = [sys.executable, __file__, "worker", "--servers", server.url, "--agents", str(n)]
            cmd += ["--name", f"w{i}", "--state", str(state / "agents"), "--out", str(state / f"w{i}.json")]
            log = open(state / f"w{i}.log", "wb")
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        await asyncio.wait_for(done.wait(), args.timeout)
        wall = time.perf_counter() - started
        await asyncio.sleep(1.0)  # late duplicates, if any, would show up here
        await sub.unsubscribe()
        info = await client.js.stream_info(client.names.jobs_stream)
        records = await client.list_jobs()
        await client.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()

    workers = [json.loads((state / f"w{i}.json").read_text()) for i in range(len(procs))]
    latencies = [x for w in workers for x in w["claim_latencies"]]
    per_agent = [c for w in workers for c in w["per_agent"].values()]
    multi = {j: len(c) for j, c in claims.items() if len(c) != 1}
    not_once = [r.job_id for r in records if r.state is not JobState.completed or r.attempt != 1]
    first_claim = min(e.ts for c in claims.values() for e in c)
    last_done = max(e.ts for e in completed.values())
    drain = last_done - first_claim
    print(f"agents: {args.agents} in {args.procs} processes ({', '.join(map(str, per_proc))} agents each), 1 slot each")
    print(
        f"exactly once: {len(completed)}/{args.jobs} completed, {len(claims)} jobs claimed, "
        f"{len(multi)} claimed more than once, {len(not_once)} not completed on attempt 1, "
        f"{info.state.messages} left in the work queue, agents' own claim counts sum to {sum(per_agent)}"
    )
    print(
        f"claim latency (fetched -> claim committed in KV): p50 {pct(latencies, 50) * 1000:.1f} ms, "
        f"p99 {pct(latencies, 99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms over {len(latencies)} claims"
    )
    print(
        f"drain: first claim to last completion {drain:.1f}s ({args.jobs / drain:.0f} jobs/s); "
        f"from starting the agent processes {wall:.1f}s"
    )
    print(f"claims per agent: min {min(per_agent)}, median {statistics.median(per_agent):.0f}, max {max(per_agent)}")
    ok = not multi and not not_once and len(completed) == args.jobs and info.state.messages == 0
    if not ok:
        print("FAILED: some job was not claimed exactly once", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role")
    w = sub.add_parser("worker")
    w.add_argument("--servers", required=True)
    w.add_argument("--agents", type=int, required=True)
    w.add_argument("--name", required=True)
    w.add_argument("--state", required=True)
    w.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--procs", type=int, default=5)
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    args = p.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(args) if args.role == "worker" else drive(args))


if __name__ == "__main__":
    main()
