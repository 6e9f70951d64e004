"""Benchmarks of the job machinery on this machine, with a real nats-server and a real agent.

    python benchmarks/jobs_over_nats.py [--jobs 1000] [--events 50000] [--dpo-steps 30] [--skip-dpo]

Prints one JSON line per figure:
- claim: submit -> claimed latency over N no-op jobs, one at a time, against an
  idle agent (goal p50 < 5 ms). Measured as the job record's started_at (set by
  the agent's claim) minus submitted_at (set by the client before it writes the
  record and publishes), both on this machine's clock.
- relay: events/s through the full relay path: the rank-0 emitter thread ->
  Unix socket -> the agent's relay -> buffered JetStream publisher -> stored in
  the events stream (goal >= 10k/s).
- dpo_relay_overhead: median training-step time of the tiny DPO recipe with
  the event relay on vs off, alternating runs (goal: overhead < 2%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState
from trl_nats.publishing import EventPublisher
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings
from trl_nats.topology import ensure_topology

REPO = Path(__file__).resolve().parent.parent


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def bench_claim(settings: NatsSettings, state: Path, n: int) -> dict:
    env = dict(os.environ, TRL_NATS_SERVERS=",".join(settings.servers), PYTHONUNBUFFERED="1")
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trl_nats_agent",
            "--state-dir",
            str(state / "agent"),
            "--device",
            "cpu",
            "--slots",
            "1",
            "--recipe-override",
            "inline:noop",
            "--log-level",
            "WARNING",
        ],
        env=env,
    )
    client = await Client.connect(settings)
    try:
        ref = await client.upload_dataset([{"prompt": "p", "chosen": "c", "rejected": "r"}])
        while not await client.list_agents():
            await asyncio.sleep(0.1)
        lat = []
        for i in range(n + 20):
            job = await client.submit(JobSpec(job_id=f"claim-{i}", model="m", dataset=ref))
            while True:
                rec = await job.status()
                if rec.state is not JobState.scheduled:
                    break
                await asyncio.sleep(0.001)
            while rec.state is not JobState.completed:  # idle agent before the next one
                await asyncio.sleep(0.001)
                rec = await job.status()
            if i >= 20:  # warm-up
                lat.append((rec.started_at - rec.submitted_at) * 1000)
        return {
            "figure": "claim",
            "jobs": n,
            "p50_ms": round(pct(lat, 50), 3),
            "p99_ms": round(pct(lat, 99), 3),
            "max_ms": round(max(lat), 3),
            "goal": "p50 < 5 ms",
        }
    finally:
        await client.close()
        agent.terminate()
        agent.wait(30)


async def bench_relay(settings: NatsSettings, state: Path, n: int) -> dict:
    import nats
    from trl_nats_agent.relay import EventSocket

    nc = await nats.connect(settings.servers)
    js = nc.jetstream()
    await ensure_topology(js, settings)
    names = settings.names
    publisher = EventPublisher(js).start()
    seq = {"n": 0}

    def on_event(event) -> None:
        seq["n"] += 1
        kind = type(event).__struct_config__.tag
        from trl_nats.messages import encode

        publisher.put(names.event(names.events("relay"), kind), encode(event), f"relay.1.{seq['n']}")

    sock_path = state / "relay.sock"
    sock = EventSocket(sock_path, job_id="relay", attempt=1, node="bench", on_event=on_event)
    await sock.start()
    before = (await js.stream_info(names.events_stream)).state.messages

    # rank 0 is its own process in a real job, so the writer is one here too
    writer_code = (
        "import sys\n"
        "from trl_nats_agent.recipes.events import EventEmitter\n"
        "n = int(sys.argv[2])\n"
        "em = EventEmitter(sys.argv[1], queue_size=n + 10)\n"
        "m = {'loss': 0.69, 'grad_norm': 1.2, 'learning_rate': 1e-6, 'rewards/margins': 0.01,\n"
        "     'rewards/accuracies': 0.5, 'rewards/chosen': 0.0, 'rewards/rejected': 0.0}\n"
        "for i in range(n):\n"
        "    em.metrics(i + 1, n, i / n, m)\n"
        "em.close(timeout=120)\n"
        "print(em.dropped)\n"
    )
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", writer_code, str(sock_path), str(n), stdout=asyncio.subprocess.PIPE
    )
    while (await js.stream_info(names.events_stream)).state.messages - before < n:
        await asyncio.sleep(0.02)
        if proc.returncode is not None and proc.returncode != 0:
            break
    dt = time.perf_counter() - t0
    out, _ = await proc.communicate()
    stats = {"dropped": int(out.strip() or -1)}
    stored = (await js.stream_info(names.events_stream)).state.messages - before
    await sock.close()
    await publisher.close()
    await nc.close()
    return {
        "figure": "relay",
        "events": n,
        "stored": stored,
        "dropped_by_emitter": stats.get("dropped"),
        "seconds": round(dt, 3),
        "events_per_s": round(stored / dt),
        "goal": ">= 10000 events/s",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--dpo-steps", type=int, default=30)
    ap.add_argument("--dpo-rounds", type=int, default=3)
    ap.add_argument("--skip-dpo", action="store_true")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="trl-nats-bench-"))
    with EmbeddedNats(state / "nats") as server:
        settings = NatsSettings(servers=[server.url])
        print(json.dumps(asyncio.run(bench_claim(settings, state, args.jobs))), flush=True)
        print(json.dumps(asyncio.run(bench_relay(settings, state, args.events))), flush=True)
        if not args.skip_dpo:
            from dpo_relay_overhead import bench_dpo_overhead

            print(json.dumps(bench_dpo_overhead(settings, state, args.dpo_steps, args.dpo_rounds)), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
