"""``trl-nats-agent``: run the node agent on this machine until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path

from trl_nats.settings import add_connection_args, settings_from_args
from trl_nats_agent.agent import Agent
from trl_nats_agent.capacity import cpu_slots, discover_gpus
from trl_nats_agent.settings import AgentSettings, default


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options left out stay out of the namespace (argparse.SUPPRESS): AgentSettings holds every default."""
    p = argparse.ArgumentParser(prog="trl-nats-agent", description=__doc__, argument_default=argparse.SUPPRESS)
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
    p.add_argument("--gpus", default=None, help="comma-separated GPU indices to offer (default: all)")
    p.add_argument("--agent-id", dest="agent_id", help="stable id (default: <hostname>-<random>)")
    p.add_argument("--node", help="node name shown in job records (default: hostname)")
    p.add_argument(
        "--drain-timeout",
        dest="drain_timeout_s",
        type=float,
        help=f"on SIGTERM, let running jobs run this many seconds before handing them back (default {default('drain_timeout_s')})",
    )
    p.add_argument(
        "--cancel-grace",
        dest="cancel_grace_s",
        type=float,
        help=f"seconds between SIGTERM and SIGKILL on cancel (default {default('cancel_grace_s')})",
    )
    p.add_argument(
        "--heartbeat",
        dest="heartbeat_s",
        type=float,
        help=f"seconds between heartbeats (default {default('heartbeat_s')})",
    )
    p.add_argument(
        "--checkpoint-store",
        dest="checkpoint_store",
        help="where checkpoints and final models are stored: 'nats' (the artifacts object store, so any agent "
        "can resume and anyone can `trl-nats pull`), a shared directory, or 'local' (where the trainer wrote them) "
        f"(env TRL_NATS_CHECKPOINT_STORE; default {default('checkpoint_store')})",
    )
    p.add_argument(
        "--checkpoint-max-bytes",
        dest="checkpoint_max_bytes",
        type=int,
        help=f"largest checkpoint the nats store takes (default {default('checkpoint_max_bytes')} bytes)",
    )
    p.add_argument(
        "--output-root",
        dest="output_root",
        type=lambda v: Path(v).resolve(),
        help="job outputs must stay inside this directory (default <state-dir>/outputs)",
    )
    p.add_argument(
        "--model-root",
        dest="model_roots",
        action="append",
        type=Path,
        help="a directory local model paths must be under (repeatable; default: any path)",
    )
    p.add_argument(
        "--allow-remote-code",
        dest="allow_remote_code",
        action="store_true",
        help="run jobs that ask for trust_remote_code (executes Python from model repositories)",
    )
    p.add_argument(
        "--offline",
        dest="offline",
        action="store_true",
        help="this node has no hub access (env TRL_NATS_OFFLINE=1): ranks run with HF_HUB_OFFLINE=1 and "
        "TRANSFORMERS_OFFLINE=1, and a job naming a hub id not in the local hub cache fails at once",
    )
    p.add_argument(
        "--gang-timeout",
        dest="gang_timeout_s",
        type=float,
        help=f"seconds a multi-node job's gang may take to form before it goes back to the queue (default {default('gang_timeout_s')})",
    )
    p.add_argument(
        "--advertise-addr",
        dest="advertise_addr",
        help="address other nodes reach this one at for multi-node jobs (env TRL_NATS_ADVERTISE_ADDR; "
        "default: this host's address on the route to NATS)",
    )
    p.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="serve Prometheus metrics on this port (env TRL_NATS_METRICS_PORT; 0: any free port; default: none)",
    )
    p.add_argument(
        "--metrics-host",
        dest="metrics_host",
        help=f"address the metrics endpoint listens on (default {default('metrics_host')})",
    )
    p.add_argument("--recipe-override", dest="recipe_override", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO")
    add_connection_args(p)
    return p.parse_args(argv)


# settings that may come from the environment when the option is not given
_FROM_ENV = {
    "checkpoint_store": ("TRL_NATS_CHECKPOINT_STORE", str),
    "advertise_addr": ("TRL_NATS_ADVERTISE_ADDR", str),
    "metrics_port": ("TRL_NATS_METRICS_PORT", int),
    "offline": ("TRL_NATS_OFFLINE", _truthy),
}
# every option that is an AgentSettings field under the same name
_SETTINGS = {f.name for f in dataclasses.fields(AgentSettings)} - {"state_dir", "device", "gpus"}


def build_settings(args: argparse.Namespace) -> AgentSettings:
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
    given = {name: value for name, value in vars(args).items() if name in _SETTINGS and value not in ("", None)}
    for name, (env, convert) in _FROM_ENV.items():
        if name not in given and os.environ.get(env):
            given[name] = convert(os.environ[env])
    return AgentSettings(state_dir=Path(args.state_dir).resolve(), device=device, gpus=tuple(gpus), **given)


async def amain(args: argparse.Namespace) -> None:
    agent = Agent(settings_from_args(args), build_settings(args))
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
