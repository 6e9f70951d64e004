"""``trl-nats serve``: run the OpenAI fine-tuning API gateway as a program.

The gateway is the ``trl_nats_provider.openai`` package (``pip install 'trl-nats-provider[openai]'``);
the core imports nothing of it and starts ``python -m trl_nats_provider.openai`` with the same
arguments. ``--embedded`` first brings up what ``trl-nats up`` does (a nats-server and one agent on
this machine), so one command serves the API end to end.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from trl_nats.local_agent import agent_available, agent_process
from trl_nats.settings import ENV_PREFIX, add_connection_args

GATEWAY_MODULE = "trl_nats_provider.openai"
INSTALL_HINT = (
    "the OpenAI API gateway is not installed here: pip install 'trl-nats-provider[openai]' "
    "(from this repository: pip install './provider[openai]')"
)
_PASSED = ("servers", "prefix", "user", "password", "token", "nkey_seed", "creds_file", "tls_ca", "tls_cert", "tls_key")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def gateway_missing() -> str | None:
    """What to install when the gateway or its web stack is missing here, else None."""
    for module in ("trl_nats_provider", GATEWAY_MODULE, "fastapi", "uvicorn", "multipart"):
        if not _installed(module):
            return INSTALL_HINT + f" (module {module!r} is missing)"
    return None


def add_parser(sub) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "serve",
        help="serve the OpenAI fine-tuning API (/v1/files, /v1/fine_tuning/jobs) over NATS",
        description="serve the OpenAI fine-tuning API over NATS; needs trl-nats-provider[openai]",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    s.add_argument("--api-keys-file", help="bearer API keys, one a line, 'name:key' to name a namespace")
    s.add_argument("--gpus", type=int, default=1, help="GPUs per node each job asks for")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training parameter for every job")
    s.add_argument(
        "--dpo-lora", metavar="VALUE", help="train every DPO job as LoRA: true, or a JSON object of LoRA fields"
    )
    s.add_argument("--embedded", action="store_true", help="also run a nats-server and one agent here (trl-nats up)")
    s.add_argument("--state-dir", default=".state/serve", help="with --embedded: NATS store and agent state")
    s.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="with --embedded: the agent's")
    s.add_argument("--slots", type=int, default=2, help="with --embedded, CPU mode: training processes offered")
    add_connection_args(s)
    return s


def gateway_command(args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        GATEWAY_MODULE,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--gpus",
        str(args.gpus),
    ]
    if args.api_keys_file:
        cmd += ["--api-keys-file", args.api_keys_file]
    for pair in args.set:
        cmd += ["--set", pair]
    if args.dpo_lora:
        cmd += ["--dpo-lora", args.dpo_lora]
    return cmd


def gateway_env(args: argparse.Namespace, servers: str | None = None) -> dict[str, str]:
    """The connection flags as the TRL_NATS_* variables the gateway reads (a password stays off its command line)."""
    env = dict(os.environ)
    for name in _PASSED:
        value = servers if name == "servers" and servers else getattr(args, name, None)
        if value:
            env[ENV_PREFIX + name.upper()] = value
    return env


def run(args: argparse.Namespace) -> int:
    """Run the gateway (and with --embedded a nats-server and an agent) until Ctrl-C; its exit code."""
    missing = gateway_missing()
    if missing:
        print(f"trl-nats: {missing}", file=sys.stderr)
        return 2
    server = agent = None
    servers = None
    try:
        if args.embedded:
            from trl_nats.server import EmbeddedNats

            state = Path(args.state_dir).resolve()
            server = EmbeddedNats(state / "nats").start()
            servers = server.url
            print(f"nats-server {server.url} (JetStream store {state / 'nats'})", flush=True)
            if not agent_available():
                print("trl-nats: no agent installed here (pip install ./agents): jobs wait for one", flush=True)
            else:
                agent = agent_process(state / "agent", args.device, args.slots, server.url, "--log-level", "WARNING")
                print(f"agent started ({args.device}, state {state / 'agent'})", flush=True)
        gateway = subprocess.Popen(gateway_command(args), env=gateway_env(args, servers))
        print(f"OpenAI API: http://{args.host}:{args.port}/v1 (OpenAI(base_url=...))", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: gateway.terminate())
        try:
            return gateway.wait()
        except KeyboardInterrupt:
            gateway.terminate()
            return gateway.wait()
    finally:
        for proc in (agent,):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if server is not None:
            server.stop()
