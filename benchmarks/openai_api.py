"""What the OpenAI API gateway costs over the Python client, on one machine with real processes.

    python benchmarks/openai_api.py [--jobs 200] [--events 10000]

A nats-server, one agent with the inline no-op trainer (``--recipe-override inline:noop``: a job
completes right after it is claimed, no process starts) and the gateway (``python -m
trl_nats_provider.openai``, uvicorn) run as their own processes. Printed, one JSON line per figure:

- create_to_running: from just before the create call to the job's ``in_progress`` status event
  arriving at this process, over N no-op jobs one at a time, alternating the two paths so both see
  the same machine: ``openai`` SDK (``AsyncOpenAI.fine_tuning.jobs.create``) -> HTTP -> gateway ->
  NATS, against ``Client.submit`` straight onto NATS. p50, p99, max and the ratio of medians; also
  the create call alone (until its answer).
- list_events: one job's history of E events (written straight into the events stream), listed
  through ``GET /v1/fine_tuning/jobs/{id}/events``: a first page of 20, and every page of 1000 in
  turn; events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trl_nats.ports import free_port

REPO = Path(__file__).resolve().parent.parent


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "stdev_ms": round(statistics.pstdev(ms), 2),
    }


def preference_lines(n: int) -> bytes:
    rows = (REPO / "trl_nats" / "data" / "preferences.jsonl").read_text().splitlines()[:n]
    out = []
    for raw in rows:
        r = json.loads(raw)
        out.append(
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": r["prompt"]}]},
                    "preferred_output": [{"role": "assistant", "content": r["chosen"]}],
                    "non_preferred_output": [{"role": "assistant", "content": r["rejected"]}],
                }
            )
        )
    return "\n".join(out).encode()


async def run(args: argparse.Namespace) -> None:
    import httpx
    import openai

    from trl_nats.client import Client
    from trl_nats.messages import JobSpec, JobState, MetricsEvent, Resources, StatusEvent, decode, encode
    from trl_nats.publishing import EventPublisher
    from trl_nats.server import EmbeddedNats
    from trl_nats.settings import NatsSettings

    state = Path(tempfile.mkdtemp(prefix="openai-bench-"))
    server = EmbeddedNats(state / "nats").start()
    env = dict(os.environ, TRL_NATS_SERVERS=server.url)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(REPO / "agents"), str(REPO / "provider"), *filter(None, [env.get("PYTHONPATH")])]
    )
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "trl_nats_agent", "--state-dir", str(state / "agent"), "--device", "cpu"]
            + ["--slots", "1", "--heartbeat", "1", "--recipe-override", "inline:noop", "--log-level", "WARNING"],
            env=env,
            stdout=open(state / "agent.log", "wb"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "trl_nats_provider.openai", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=open(state / "gateway.log", "wb"),
            stderr=subprocess.STDOUT,
        ),
    ]
    base = f"http://127.0.0.1:{port}/v1"
    try:
        client = await Client.connect(NatsSettings(servers=[server.url]))
        running: dict[str, float] = {}
        arrived: dict[str, asyncio.Event] = {}

        async def on_status(msg) -> None:
            e = decode(msg.data, StatusEvent)
            if e.state is JobState.in_progress and e.job_id not in running:
                running[e.job_id] = time.perf_counter()
                arrived.setdefault(e.job_id, asyncio.Event()).set()

        sub = await client.nc.subscribe(f"{client.names.prefix}.events.*.status", cb=on_status)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/files").status_code == 200 and await client.list_agents():
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway or the agent did not come up; logs in {state}")
            await asyncio.sleep(0.2)
        sdk = openai.AsyncOpenAI(base_url=base, api_key="local", max_retries=0)
        f = await sdk.files.create(file=("prefs.jsonl", preference_lines(8)), purpose="fine-tune")
        assert f.status == "processed", f.status_details
        ref = await client.upload_dataset(
            [json.loads(x) for x in (REPO / "trl_nats/data/preferences.jsonl").read_text().splitlines()[:8]]
        )
        method = {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1}}}

        async def wait_running(job_id: str) -> float:
            await asyncio.wait_for(arrived.setdefault(job_id, asyncio.Event()).wait(), 60)
            return running[job_id]

        http_total, http_call, py_total, py_call = [], [], [], []
        for i in range(args.jobs + args.warmup):
            t0 = time.perf_counter()
            job = await sdk.fine_tuning.jobs.create(model="unused", training_file=f.id, method=method)
            t1 = time.perf_counter()
            t2 = await wait_running(job.id)
            t3 = time.perf_counter()
            spec = JobSpec(job_id=f"bench-{i:05d}", model="unused", dataset=ref, resources=Resources(gpus_per_node=1))
            await client.submit(spec)
            t4 = time.perf_counter()
            t5 = await wait_running(spec.job_id)
            if i >= args.warmup:
                http_total.append(t2 - t0)
                http_call.append(t1 - t0)
                py_total.append(t5 - t3)
                py_call.append(t4 - t3)
            await asyncio.sleep(0.05)  # let the agent finish the job and free its slot
        http_s, py_s = summary(http_total), summary(py_total)
        print(
            json.dumps(
                {
                    "figure": "create_to_running",
                    "openai_http": http_s,
                    "python_client": py_s,
                    "ratio_p50": round(http_s["p50_ms"] / py_s["p50_ms"], 2),
                    "create_call_openai_http": summary(http_call),
                    "create_call_python_client": summary(py_call),
                }
            ),
            flush=True,
        )

        # -- event listing --------------------------------------------------------------------------------
        job = await sdk.fine_tuning.jobs.create(model="unused", training_file=f.id, method=method)
        await wait_running(job.id)
        publisher = EventPublisher(client.js).start()
        subject = f"{client.names.events(job.id)}.metrics"
        for step in range(1, args.events + 1):
            e = MetricsEvent(job_id=job.id, attempt=1, step=step, total_steps=args.events, metrics={"loss": 1 / step})
            publisher.put(subject, encode(e), f"{job.id}.bench.{step}")
        await publisher.close(120)
        http = httpx.AsyncClient(base_url=base, timeout=120)
        first = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            r = await http.get(f"/fine_tuning/jobs/{job.id}/events", params={"limit": 20})
            first.append(time.perf_counter() - t0)
            assert r.status_code == 200 and len(r.json()["data"]) == 20
        t0 = time.perf_counter()
        seen, after, pages = 0, None, 0
        while True:
            params = {"limit": 1000, **({"after": after} if after else {})}
            page = (await http.get(f"/fine_tuning/jobs/{job.id}/events", params=params)).json()
            seen += len(page["data"])
            pages += 1
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        all_s = time.perf_counter() - t0
        await http.aclose()
        print(
            json.dumps(
                {
                    "figure": "list_events",
                    "history_events": seen,
                    "first_page_of_20": summary(first),
                    "all_pages_of_1000": {
                        "pages": pages,
                        "seconds": round(all_s, 2),
                        "events_per_s": round(seen / all_s),
                    },
                }
            ),
            flush=True,
        )
        await sub.unsubscribe()
        await sdk.close()
        await client.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=20)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
