"""Following a post-training job through a Llama Stack host's HTTP answers, the same on every host."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

from support.processes import processes_matching

TERMINAL = ("completed", "failed", "cancelled")
WAIT_S = 600  # a hang guard only: jobs here take seconds


def poll_status(
    read: Callable[[str], dict[str, Any]], job_uuid: str, until: Callable[[dict[str, Any]], bool], what: str
) -> tuple[dict[str, Any], list[str]]:
    """Read ``job_uuid``'s status with ``read`` until ``until(status)``; return it and every state seen, in order.

    A job that ends before ``until`` holds, or nothing within ``WAIT_S``, fails the test with the last status.
    """
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while True:
        st = read(job_uuid)
        if not seen or seen[-1] != st["status"]:
            seen.append(st["status"])
        if until(st):
            return st, seen
        if st["status"] in TERMINAL:
            raise AssertionError(f"{job_uuid} ended as {st['status']} while waiting for {what}: {st}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_uuid}: no {what} within {WAIT_S}s; last status {st}")
        time.sleep(0.3)


def ended(st: dict[str, Any]) -> bool:
    return st["status"] in TERMINAL


def training_processes(job_uuid: str) -> list[int]:
    """Live torchrun launchers and recipe ranks whose command line names ``job_uuid``."""
    out = []
    for pid in processes_matching(job_uuid):
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            if proc.status() != psutil.STATUS_ZOMBIE and (
                "torch.distributed.run" in cmd or "torchrun" in cmd or "trl_nats_agent.recipes" in cmd
            ):
                out.append(pid)
        except psutil.Error:
            continue
    return out
