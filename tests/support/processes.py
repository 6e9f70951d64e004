"""Real processes the tests start: node agents (``python -m trl_nats_agent``), and finding leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from support.paths import PYTHON
from trl_nats.settings import NatsSettings

NOOP = "trl_nats_agent.recipes.noop"  # the recipe that trains nothing: for tests of scheduling, not training


def cmdline(pid: int) -> str:
    """The command line of ``pid``, its arguments joined by spaces ("" once the process is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_matching(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle`` (read from /proc, no extra dependency)."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if pid != os.getpid() and needle in cmdline(pid)]


def rank_pids(job_id: str) -> list[int]:
    """The training ranks of ``job_id`` (not torchrun itself, whose command line names the same spec)."""
    return [
        pid
        for pid in processes_matching(f"/jobs/{job_id}/")
        if "torch.distributed.run" not in (cmd := cmdline(pid)) and "trl_nats_agent.recipes" in cmd
    ]


def child_env(settings: NatsSettings, **extra: str) -> dict[str, str]:
    """Environment for a child process (agent, CLI) that talks to the NATS of ``settings``."""
    env = dict(os.environ)
    env["TRL_NATS_SERVERS"] = ",".join(settings.servers)
    env["TRL_NATS_PREFIX"] = settings.prefix
    env["TRL_NATS_AGENT_TTL_S"] = str(settings.agent_ttl_s)
    env["TRL_NATS_ACK_WAIT_S"] = str(settings.ack_wait_s)
    env["TRL_NATS_MAX_DELIVER"] = str(settings.max_deliver)
    env["TRL_NATS_REPLICAS"] = str(settings.replicas)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def agents_json(env: dict[str, str]) -> list[dict]:
    """What ``trl-nats agents --json`` shows (the real CLI, as a user runs it), one dict per agent."""
    out = subprocess.run(
        [PYTHON, "-m", "trl_nats.cli", "agents", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


class AgentProcess:
    """A real ``trl-nats-agent`` child process; ``wrap`` turns its command line into the one to start (say,
    run inside a network namespace under an outer timeout)."""

    def __init__(
        self,
        env: dict[str, str],
        state_dir: Path,
        *,
        slots: int,
        agent_id: str,
        extra: list[str],
        wrap: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.agent_id = agent_id
        self.log_path = state_dir.parent / f"{agent_id}.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            PYTHON,
            "-m",
            "trl_nats_agent",
            "--state-dir",
            str(state_dir),
            "--device",
            "cpu",
            "--slots",
            str(slots),
            "--agent-id",
            agent_id,
            "--heartbeat",
            "1",
            "--cancel-grace",
            "5",
            *extra,
        ]
        if wrap is not None:
            cmd = wrap(cmd)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
