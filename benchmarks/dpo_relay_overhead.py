"""Training-step time of the tiny DPO job with the event relay on vs off.

"On" is what an agent does: a Unix socket server relaying rank 0's events to
JetStream through the buffered publisher. "Off" leaves the socket unset, so
the recipe's emitter is a no-op. Runs alternate (off, on, off, on, ...) so
machine noise hits both alike; the figure is the ratio of median step times.

    python benchmarks/dpo_relay_overhead.py [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import nats

from trl_nats.messages import JobSpec, TrainingParams, encode
from trl_nats.publishing import EventPublisher
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings
from trl_nats.topology import ensure_topology

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "trl_nats" / "data" / "preferences.jsonl"
WARMUP = 3


async def _run_once(settings: NatsSettings, work: Path, spec_path: Path, model: Path, relay: bool, tag: str) -> list:
    from trl_nats_agent.relay import EventSocket

    out = work / f"out-{tag}"
    times = work / f"times-{tag}.txt"
    env = dict(os.environ, STEP_TIMES_OUT=str(times), TRL_NATS_DEVICE="cpu", CUDA_VISIBLE_DEVICES="")
    env.pop("TRL_NATS_EVENTS_SOCKET", None)
    sock = publisher = nc = None
    relayed = {"n": 0}
    if relay:
        nc = await nats.connect(settings.servers)
        js = nc.jetstream()
        await ensure_topology(js, settings)
        publisher = EventPublisher(js).start()
        names = settings.names

        def on_event(event) -> None:
            relayed["n"] += 1
            kind = type(event).__struct_config__.tag
            publisher.put(names.event(names.events(tag), kind), encode(event), f"{tag}.1.{relayed['n']}")

        sock = EventSocket(work / f"{tag}.sock", job_id=tag, attempt=1, node="bench", on_event=on_event)
        await sock.start()
        env["TRL_NATS_EVENTS_SOCKET"] = str(work / f"{tag}.sock")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "timed_dpo.py"),
        "--spec",
        str(spec_path),
        "--dataset",
        str(DATA),
        "--output",
        str(out),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"recipe failed ({proc.returncode}): {err.decode()[-2000:]}")
    if relay:
        await sock.close()
        await publisher.close()
        await nc.close()
    stamps = [float(x) for x in times.read_text().split()]
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)][WARMUP:]


def bench_dpo_overhead(settings: NatsSettings, state: Path, steps: int, rounds: int) -> dict:
    import subprocess

    work = Path(tempfile.mkdtemp(dir=state, prefix="dpo-overhead-"))
    model = work / "tiny-model"
    subprocess.run(
        [sys.executable, "-m", "trl_nats_agent.testing.tiny", str(model), "--dataset", str(DATA)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    spec = JobSpec(
        job_id="overhead",
        model=str(model),
        dataset={"object": "sha256-" + "0" * 64, "sha256": "0" * 64, "rows": 0, "bytes": 0},
        params=TrainingParams(
            max_steps=steps,
            per_device_batch_size=4,
            learning_rate=5e-4,
            max_length=256,
            save_steps=10_000,
            shuffle=False,
        ),
    )
    spec_path = work / "spec.json"
    spec_path.write_bytes(encode(spec))
    on: list[float] = []
    off: list[float] = []
    for r in range(rounds):
        off += asyncio.run(_run_once(settings, work, spec_path, model, False, f"off{r}"))
        on += asyncio.run(_run_once(settings, work, spec_path, model, True, f"on{r}"))
    med_off, med_on = statistics.median(off), statistics.median(on)
    return {
        "figure": "dpo_relay_overhead",
        "steps_per_run": steps,
        "rounds": rounds,
        "median_step_s_relay_off": round(med_off, 5),
        "median_step_s_relay_on": round(med_on, 5),
        "overhead_pct": round((med_on / med_off - 1) * 100, 2),
        "goal": "< 2%",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="trl-nats-bench-"))
    with EmbeddedNats(state / "nats") as server:
        settings = NatsSettings(servers=[server.url])
        print(json.dumps(bench_dpo_overhead(settings, state, args.steps, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
