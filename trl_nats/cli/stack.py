"""The local stack: ``trl-nats up`` (a nats-server and an agent) and ``trl-nats demo`` (train a tiny model).

The agent is a separate package that brings torch: this module runs it, and the tiny-model
builder, as programs (``python -m ...``) and never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from trl_nats.cli.jobs import CliError, cmd_submit, run_with, shipped_dataset
from trl_nats.local_agent import AGENT_PACKAGE, OFFLINE, agent_available, agent_process
from trl_nats.messages import JobKind
from trl_nats.server import EmbeddedNats, LocalCluster


def tiny_model_module() -> str:
    """The agent's tiny-model builder, run as a program."""
    return f"{AGENT_PACKAGE}.testing.tiny"


def build_tiny_model(out: Path, dataset: Path) -> None:
    """A tiny Llama-style model and tokenizer in ``out``, built by the agent's builder run as a program."""
    subprocess.run([sys.executable, "-m", tiny_model_module(), str(out), "--dataset", str(dataset)], check=True)


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_up(args) -> int:
    state = Path(args.state_dir).resolve()
    if args.cluster:  # N nodes, every stream, bucket and object store replicated (at most 3 times)
        server = LocalCluster(state / "nats", args.cluster, host=args.host).start()
        os.environ["TRL_NATS_REPLICAS"] = str(min(args.cluster, 3))
    else:
        server = EmbeddedNats(state / "nats", host=args.host, port=args.port).start()
    procs: list[subprocess.Popen] = []
    print(f"nats-server {server.url} (JetStream store {state / 'nats'})", flush=True)
    try:
        if not args.no_agent:
            if not agent_available():
                raise CliError("the agent package is not installed here: pip install ./agents (or use --no-agent)")
            procs.append(agent_process(state / "agent", args.device, args.slots, server.url))
            print(f"agent started ({args.device}, state {state / 'agent'})", flush=True)
        replicas = f" TRL_NATS_REPLICAS={os.environ['TRL_NATS_REPLICAS']}" if args.cluster else ""
        print(f"export TRL_NATS_SERVERS={server.url}{replicas}   # then: trl-nats submit / jobs / agents", flush=True)
        stop = {"flag": False}

        def on_signal(*_: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop["flag"]:
            for p in procs:
                if p.poll() is not None:
                    raise CliError(f"agent exited with code {p.returncode}")
            time.sleep(0.5)
    finally:
        for p in procs:
            stop_process(p)
        server.stop()
        print("stopped", flush=True)
    return 0


def run_demo(args) -> int:
    """Embedded nats-server + one CPU/GPU agent, a tiny model built here, the shipped dataset, live progress."""
    if not agent_available():
        raise CliError("the demo trains on this machine, so it needs the agent: pip install ./agents")
    state = Path(args.state_dir).resolve()
    model_dir = state / "tiny-model"
    dataset = shipped_dataset(JobKind.dpo)
    if not (model_dir / "config.json").exists():
        print(f"building a tiny Llama-style model and tokenizer in {model_dir} ...", flush=True)
        build_tiny_model(model_dir, dataset)
    server = EmbeddedNats(state / "nats").start()
    print(f"nats-server {server.url}", flush=True)
    agent = agent_process(state / "agent", args.device, args.gpus, server.url, OFFLINE, "--log-level", "WARNING")
    try:
        ns = argparse.Namespace(
            servers=server.url,
            kind="dpo",
            model=str(model_dir),
            dataset=str(dataset),
            job_id=f"demo-{uuid.uuid4().hex[:8]}",
            gpus=args.gpus,
            nodes=1,
            gpu_type=None,
            output_dir=None,
            max_attempts=1,
            set=[
                f"max_steps={args.steps}",
                "per_device_batch_size=4",
                "learning_rate=5e-4",
                "max_length=256",
                "beta=0.1",
            ],
            spec=None,
            watch=True,
            json=False,
        )
        print(f"submitting a DPO job on {args.gpus} process(es) with FSDP2: {args.steps} steps", flush=True)
        return asyncio.run(run_with(ns, cmd_submit))
    finally:
        stop_process(agent)
        server.stop()
