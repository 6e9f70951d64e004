"""What this node can run: its GPUs (count, type, memory), or process slots in CPU mode.

GPUs are read with ``nvidia-smi`` so the agent process itself never imports
torch or initialises CUDA (its training children own the devices).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import msgspec

from trl_nats.messages import GpuInfo, Resources


def discover_gpus() -> list[GpuInfo]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total,utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        util = float(parts[3]) if len(parts) > 3 and parts[3].replace(".", "", 1).isdigit() else None
        gpus.append(GpuInfo(index=int(parts[0]), name=parts[1], memory_mib=int(float(parts[2])), utilization=util))
    return gpus


def refresh_utilization(gpus: list[GpuInfo]) -> list[GpuInfo]:
    """``gpus`` with utilisation read again from nvidia-smi (unchanged if it cannot be read)."""
    now = {g.index: g.utilization for g in discover_gpus()}
    return [msgspec.structs.replace(g, utilization=now.get(g.index, g.utilization)) for g in gpus]


def cpu_slots(n: int) -> list[GpuInfo]:
    return [GpuInfo(index=i, name="cpu", memory_mib=0) for i in range(n)]


def gpu_type_token(name: str) -> str:
    """ "NVIDIA H100 80GB HBM3" -> "h100"; the token pools and job specs use for a GPU type."""
    for word in name.replace("-", " ").split():
        w = "".join(ch for ch in word.lower() if ch.isalnum())
        if w and w not in ("nvidia", "tesla", "geforce", "rtx") and any(ch.isdigit() for ch in w):
            return w
    return "".join(ch for ch in name.lower() if ch.isalnum()) or "any"


def pools_for(gpus: list[GpuInfo]) -> list[Resources]:
    """Every single-node shape this node could ever serve (one pool each), largest first."""
    if not gpus:
        return []
    types: list[str | None] = [None]
    if gpus[0].name != "cpu":
        types.append(gpu_type_token(gpus[0].name))
    pools = []
    for g in range(len(gpus), 0, -1):
        for t in types:
            pools.append(Resources(nodes=1, gpus_per_node=g, gpu_type=t))
    return pools


def threads_per_slot(total_slots: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, total_slots))
