"""The node agent run as a program on this machine (``up``, ``demo``, ``serve --embedded``, the embedded Llama Stack).

The agent is a separate package that brings torch: the core finds it and runs it (``python -m trl_nats_agent``),
and never imports it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

AGENT_PACKAGE = "trl_nats_agent"
OFFLINE = "--offline"  # the agent's flag: ranks never try the model hub


def agent_available() -> bool:
    """Whether the agent package is installed here (found, not imported: it brings torch)."""
    return importlib.util.find_spec(AGENT_PACKAGE) is not None


def agent_command(state_dir: Path, device: str, slots: int, *extra: str) -> list[str]:
    """The command line of a local agent (``up``, ``demo``, ``serve --embedded``, the embedded Llama Stack).

    Demos and tests add ``OFFLINE``: they train a model built on disk, so a model that is not there fails at
    once instead of after the hub client's retries; ``up`` and ``serve`` leave hub access to the user.
    """
    cmd = [sys.executable, "-m", AGENT_PACKAGE, "--state-dir", str(state_dir), "--device", device]
    return [*cmd, "--slots", str(slots), *extra]


def agent_process(state_dir: Path, device: str, slots: int, server_url: str, *extra: str) -> subprocess.Popen:
    """The node agent as a child process of this command, talking to ``server_url``."""
    cmd = agent_command(state_dir, device, slots, *extra)
    return subprocess.Popen(cmd, env=dict(os.environ, TRL_NATS_SERVERS=server_url))
