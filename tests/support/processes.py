"""Real processes the tests start: node agents (``python -m trl_nats_agent``), and finding leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from support.paths import PYTHON

NOOP = "trl_nats_agent.recipes.noop"  # the recipe that trains nothing: for tests of scheduling, not training


def processes_matching(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle`` (read from /proc, no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def rank_pids(job_id: str) -> list[int]:
    """The training ranks of ``job_id`` (not torchrun itself, whose command line names the same spec)."""
    pids = []
    for pid in processes_matching(f"/jobs/{job_id}/"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "torch.distributed.run" not in cmdline and "trl_nats_agent.recipes" in cmdline:
            pids.append(pid)
    return pids


class AgentProcess:
    """A real ``trl-nats-agent`` child process."""

    def __init__(self, env: dict[str, str], state_dir: Path, *, slots: int, agent_id: str, extra: list[str]) -> None:
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
