"""``trl-nats``: submit, follow, cancel and list jobs; bring up a local stack.

Human output by default; ``--json`` prints machine-readable JSON (one object
per line for streams) for scripts.

Lives here: the entry point. ``parser.py`` (subcommands and options), ``jobs.py`` (the job
commands), ``render.py`` (what a person sees), ``stack.py`` (``up`` and ``demo``).
``trl-nats agent ...`` runs the node agent, a separate package, as a program.
"""

from __future__ import annotations

import asyncio
import os
import sys

from trl_nats import serve
from trl_nats.artifacts import ArtifactError
from trl_nats.artifacts import cli as artifacts_cli
from trl_nats.cli import pause as pause_cli
from trl_nats.cli.jobs import COMMANDS, CliError, read_dataset, run_with
from trl_nats.cli.parser import build_parser
from trl_nats.cli.stack import run_demo, run_up
from trl_nats.local_agent import AGENT_PACKAGE, agent_available
from trl_nats.messages import BadMessage
from trl_nats.pausing import CannotPause
from trl_nats.store import JobNotFound

COMMANDS = {**COMMANDS, **artifacts_cli.COMMANDS, **pause_cli.COMMANDS}

__all__ = ["CliError", "build_parser", "main", "read_dataset"]


def run_agent(argv: list[str]) -> None:
    """``trl-nats agent ARGS``: become the node agent (``python -m trl_nats_agent ARGS``), arguments untouched."""
    if not agent_available():
        print(
            "trl-nats: the agent is not installed here: pip install ./agents (it brings torch and TRL)", file=sys.stderr
        )
        sys.exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", AGENT_PACKAGE, *argv])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:
        run_agent(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            code = run_up(args)
        elif args.command == "demo":
            code = run_demo(args)
        elif args.command == "serve":
            code = serve.run(args)
        else:
            code = asyncio.run(run_with(args, COMMANDS[args.command]))
    except CliError as exc:
        print(f"trl-nats: {exc}", file=sys.stderr)
        code = 2
    except (JobNotFound, BadMessage, ConnectionError, PermissionError, ArtifactError, CannotPause) as exc:
        print(f"trl-nats: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
