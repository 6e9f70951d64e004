"""The ``trl-nats`` command line: its subcommands and their options."""

from __future__ import annotations

import argparse

from trl_nats import serve
from trl_nats.artifacts import cli as artifacts_cli
from trl_nats.cli import pause as pause_cli
from trl_nats.messages import DPO_LOSS_TYPES, DTYPES, JobKind
from trl_nats.settings import add_connection_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trl-nats", description="DPO and SFT jobs on a fleet of GPU nodes over NATS")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        add_connection_args(sp)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable JSON output")
        return sp

    sub.add_parser("agent", help="run the node agent on this machine (see trl-nats agent --help)", add_help=False)
    up = command("up", "run an embedded nats-server and one agent until Ctrl-C", json_flag=False)
    up.add_argument("--state-dir", default=".state/up")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=4222)
    up.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    up.add_argument("--slots", type=int, default=2, help="CPU mode: training processes the agent offers")
    up.add_argument("--no-agent", action="store_true")
    up.add_argument(
        "--cluster", type=int, metavar="N", help="run N nats-server nodes as one JetStream cluster (R3 streams)"
    )

    d = sub.add_parser("demo", help="train a tiny model end to end on this machine (embedded stack)")
    d.add_argument("--state-dir", default=".state/demo-nats")
    d.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    d.add_argument("--gpus", type=int, default=2, help="processes (GPUs or CPU slots) for the job")
    d.add_argument("--steps", type=int, default=40)

    s = command("submit", "queue a DPO or SFT job")
    s.add_argument("--kind", choices=[k.value for k in JobKind], default="dpo")
    s.add_argument("--model", help="Hugging Face id or a path on the agents")
    s.add_argument("--dataset", help="JSON-lines file (default: the shipped dataset for --kind)")
    s.add_argument("--job-id", help="id to use (resubmitting the same id does not start a second job)")
    s.add_argument("--gpus", type=int, default=1, help="GPUs (CPU slots) per node")
    s.add_argument("--nodes", type=int, default=1, help="nodes (one agent each) for a multi-node job")
    s.add_argument("--gpu-type", help="e.g. H100; default any")
    s.add_argument("--output-dir", help="where the agent writes checkpoints (default: its own outputs dir)")
    s.add_argument("--max-attempts", type=int, default=3)
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"a training parameter, e.g. beta=0.2 loss_type=ipo max_steps=100 (loss types: "
        f"{', '.join(DPO_LOSS_TYPES)}; dtypes: {', '.join(DTYPES)})",
    )
    s.add_argument("--spec", help="submit a full JobSpec JSON file instead")
    s.add_argument("--watch", action="store_true", help="follow the job until it ends")

    w = command("watch", "follow a job's events live (its history first)")
    w.add_argument("job_id")
    w.add_argument("--new-only", dest="from_start", action="store_false", help="skip the history")
    command("jobs", "list jobs")
    st = command("status", "show one job")
    st.add_argument("job_id")
    c = command("cancel", "cancel a job")
    c.add_argument("job_id")
    c.add_argument("--wait", action="store_true", help="wait until it has stopped")
    command("agents", "list the agents that are heartbeating")
    pl = command("plot", "draw a job's loss, reward margin and accuracy curves to a PNG (needs trl-nats[plot])")
    pl.add_argument("job_id")
    pl.add_argument("-o", "--output", help="PNG path (default <job>.png)")
    serve.add_parser(sub)
    artifacts_cli.add_parsers(command)
    pause_cli.add_parsers(command)
    return p
