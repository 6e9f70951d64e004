"""Tie a training rank's life to its torchrun: when torchrun dies, so does the rank, even on SIGKILL.

The agent starts torchrun with PR_SET_PDEATHSIG, so torchrun dies with the
agent; torchrun's own workers have no such tie and would keep training as
orphans (a second copy of the job, holding GPUs) after a SIGKILLed agent.
:func:`die_with_torchrun` asks the kernel to SIGKILL this rank when its
parent exits, then checks that the parent is still torchrun: if torchrun
died before the request took hold, the rank has been re-parented already and
exits at once. It runs at import of the ``recipes`` package, before the heavy
imports, and only under torchrun started by an agent. Linux only; elsewhere
a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
_TORCHRUN_MARKERS = (b"torch.distributed.run", b"torchrun")


def _parent_is_torchrun(ppid: int) -> bool:
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return any(m in cmdline for m in _TORCHRUN_MARKERS)


def die_with_torchrun() -> None:
    if not sys.platform.startswith("linux"):
        return
    if "TORCHELASTIC_RUN_ID" not in os.environ or "TRL_NATS_JOB_ID" not in os.environ:
        return  # not a rank an agent started (a test importing the recipes, a plain run)
    ppid = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() != ppid or not _parent_is_torchrun(ppid):
        os._exit(1)  # torchrun is already gone: this rank is an orphan before it began
