"""Starting and stopping one job's ``torchrun`` process tree.

torchrun runs in its own session (process group) so a cancel reaches every
rank at once, and it is tied to the agent with PR_SET_PDEATHSIG so it dies
with the agent even on SIGKILL. Output is kept in a log file and its last
lines in memory, to become the error of a failed job.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def torchrun_command(
    recipe_module: str,
    nproc: int,
    recipe_args: list[str],
    *,
    rdzv_endpoint: str,
    run_id: str,
    nnodes: int = 1,
    node_rank: int = 0,
    local_addr: str | None = None,
) -> list[str]:
    """The torchrun command for one node of a job.

    One node: c10d rendezvous on a local port. Several nodes: static rendezvous, because the
    gang has already decided who is node rank k (c10d would hand out ranks in arrival order,
    and rank 0, whose events the leader relays, must run on the leader). Node rank 0 hosts the
    store at ``rdzv_endpoint``; every node passes ``local_addr``, the address the others reach
    it at, since torchrun otherwise publishes the hostname, which often resolves to loopback.
    """
    backend = "static" if nnodes > 1 else "c10d"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        f"--node-rank={node_rank}",
        f"--rdzv-backend={backend}",
        f"--rdzv-endpoint={rdzv_endpoint}",
        f"--rdzv-id={run_id}",
        "--max-restarts=0",
    ]
    if local_addr:
        cmd.append(f"--local-addr={local_addr}")
    return [*cmd, "-m", recipe_module, *recipe_args]


class TrainingProcess:
    """One torchrun process tree; ``on_line`` sees every output line (never blocks on it)."""

    def __init__(
        self,
        cmd: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        on_line: Callable[[str], None] | None = None,
        tail_lines: int = 200,
    ) -> None:
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.on_line = on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopped_before_start = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        if self._stopped_before_start:
            return
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._reader = asyncio.create_task(self._read_output())

    async def _read_output(self) -> None:
        assert self.proc and self.proc.stdout
        with open(self.log_path, "ab") as logf:
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    return
                logf.write(raw)
                logf.flush()
                line = raw.decode(errors="replace").rstrip()
                if not line:
                    continue
                self.tail.append(line)
                if self.on_line:
                    self.on_line(line)

    async def wait(self) -> int:
        if self.proc is None:  # stopped before it started
            return -signal.SIGTERM
        rc = await self.proc.wait()
        if self._reader:
            try:
                await asyncio.wait_for(self._reader, 10)
            except TimeoutError:
                self._reader.cancel()
        # ranks that outlived torchrun (they should not) go with the group
        self._signal_group(signal.SIGKILL)
        return rc

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def stop(self, grace: float) -> int:
        """SIGTERM the whole group, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.proc is None:
            self._stopped_before_start = True
            return -signal.SIGTERM
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                log.warning("torchrun %s did not stop within %.0fs: killing", self.proc.pid, grace)
                self._signal_group(signal.SIGKILL)
        return await self.wait()

    def error_tail(self, lines: int = 20) -> str:
        """The last output lines of the training itself, without torchrun's own failure report."""
        return "\n".join(strip_torchrun_report(list(self.tail))[-lines:])


def strip_torchrun_report(lines: list[str]) -> list[str]:
    """Drop torchrun's traceback and ChildFailedError summary, which say nothing about the cause."""
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            window = lines[i : i + 30]
            if any("torch/distributed/run.py" in w or "launch_agent" in w for w in window) and i > 0:
                return lines[:i]
    return lines
