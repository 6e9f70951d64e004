"""``trl-nats-agent``: run the node agent on this machine until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from trl_nats.settings import add_connection_args, settings_from_args
from trl_nats_agent.agent import Agent, AgentConfig
from trl_nats_agent.capacity import cpu_slots, discover_gpus
from trl_nats_agent.checkpoints import DEFAULT_MAX_BYTES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="trl-nats-agent", description=__doc__)
    p.add_argument(
        "--state-dir",
        default=os.environ.get("TRL_NATS_STATE_DIR", ".state/agent"),
        help="work dirs, dataset cache and default outputs (default .state/agent)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="auto: the GPUs nvidia-smi reports, else CPU mode",
    )
    p.add_argument("--slots", type=int, default=2, help="CPU mode: how many training processes this node offers")
    p.add_argument("--gpus", help="comma-separated GPU indices to offer (default: all)")
    p.add_argument("--agent-id", default="", help="stable id (default: <hostname>-<random>)")
    p.add_argument("--node", default="", help="node name shown in job records (default: hostname)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=0.0,
        help="on SIGTERM, let running jobs run this many seconds before handing them back",
    )
    p.add_argument("--cancel-grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL on cancel")
    p.add_argument("--heartbeat", type=float, default=3.0, help="seconds between heartbeats")
    p.add_argument(
        "--checkpoint-store",
        default=os.environ.get("TRL_NATS_CHECKPOINT_STORE", "nats"),
        help="where checkpoints and final models are stored: 'nats' (the artifacts object store, so any agent "
        "can resume and anyone can `trl-nats pull`), a shared directory, or 'local' (where the trainer wrote "
        "them) (default nats)",
    )
    p.add_argument(
        "--checkpoint-max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="largest checkpoint the nats store takes (default 2 GiB)",
    )
    p.add_argument(
        "--output-root",
        help="job outputs must stay inside this directory (default <state-dir>/outputs)",
    )
    p.add_argument(
        "--model-root",
        action="append",
        default=[],
        help="a directory local model paths must be under (repeatable; default: any path)",
    )
    p.add_argument(
        "--allow-remote-code",
        action="store_true",
        help="run jobs that ask for trust_remote_code (executes Python from model repositories)",
    )
    p.add_argument(
        "--gang-timeout",
        type=float,
        default=60.0,
        help="seconds a multi-node job's gang may take to form before it goes back to the queue",
    )
    p.add_argument(
        "--advertise-addr",
        default=os.environ.get("TRL_NATS_ADVERTISE_ADDR", ""),
        help="address other nodes reach this one at for multi-node jobs (default: this host's address on the route to NATS)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ["TRL_NATS_METRICS_PORT"]) if os.environ.get("TRL_NATS_METRICS_PORT") else None,
        help="serve Prometheus metrics on this port (0: any free port; default: none)",
    )
    p.add_argument("--metrics-host", default="0.0.0.0", help="address the metrics endpoint listens on")
    p.add_argument("--recipe-override", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")
    add_connection_args(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> AgentConfig:
    gpus = [] if args.device == "cpu" else discover_gpus()
    if args.device == "cuda" and not gpus:
        sys.exit("trl-nats-agent: --device cuda but nvidia-smi reports no GPU; use --device cpu for CPU mode")
    if gpus and args.gpus:
        wanted = {int(x) for x in args.gpus.split(",")}
        gpus = [g for g in gpus if g.index in wanted]
    device = "cuda" if gpus else "cpu"
    if device == "cpu":
        if args.slots < 1:
            sys.exit("trl-nats-agent: --slots must be at least 1")
        gpus = cpu_slots(args.slots)
    kwargs = {}
    if args.node:
        kwargs["node"] = args.node
    return AgentConfig(
        state_dir=Path(args.state_dir).resolve(),
        device=device,
        gpus=gpus,
        agent_id=args.agent_id,
        heartbeat_s=args.heartbeat,
        cancel_grace_s=args.cancel_grace,
        drain_timeout_s=args.drain_timeout,
        recipe_override=args.recipe_override,
        checkpoint_store=args.checkpoint_store,
        checkpoint_max_bytes=args.checkpoint_max_bytes,
        output_root=Path(args.output_root).resolve() if args.output_root else None,
        model_roots=[Path(r) for r in args.model_root],
        allow_remote_code=args.allow_remote_code,
        gang_timeout_s=args.gang_timeout,
        advertise_addr=args.advertise_addr,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        **kwargs,
    )


async def amain(args: argparse.Namespace) -> None:
    agent = Agent(settings_from_args(args), build_config(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    await agent.run()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(amain(args))
    except ConnectionError as exc:
        sys.exit(f"trl-nats-agent: {exc}")


if __name__ == "__main__":
    main()
