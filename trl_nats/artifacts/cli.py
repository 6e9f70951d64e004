"""``trl-nats pull``, ``trl-nats artifacts`` and ``trl-nats prune``: the parsers and the commands.

``trl_nats.cli`` adds these to its parser with :func:`add_parsers` and dispatches to :data:`COMMANDS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from trl_nats.artifacts.progress import MB, ProgressBar

if TYPE_CHECKING:
    import argparse

    from trl_nats.client import Client


def add_parsers(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("pull", "download a job's final model or a checkpoint, every file verified (resumes)")
    p.add_argument("job_id")
    p.add_argument("--checkpoint", default="final", help="a step number, or 'final' (default)")
    p.add_argument("-o", "--output", help="directory to download into (default ./<job>-<name>)")
    a = command("artifacts", "list a job's stored checkpoints and final model")
    a.add_argument("job_id")
    r = command("prune", "delete a job's stored checkpoints (never the final model)")
    r.add_argument("job_id")
    r.add_argument("--keep", type=int, default=0, help="keep the newest N checkpoints (default 0)")


def _mb(n: int) -> str:
    return f"{n / MB:,.1f} MB"


async def cmd_pull(client: Client, args) -> int:
    from trl_nats.artifacts.manifest import artifact_name

    name = artifact_name(args.checkpoint)
    dest = Path(args.output or f"{args.job_id}-{name}")
    progress = None if args.json else ProgressBar.for_terminal()
    result = await client.pull(args.job_id, checkpoint=name, dest=dest, progress=progress)
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(result.path),
                    "name": result.manifest.name,
                    "bytes": result.manifest.bytes,
                    "downloaded": result.downloaded,
                    "kept": result.kept,
                }
            )
        )
        return 0
    kept = f" ({len(result.kept)} already there and verified)" if result.kept else ""
    print(
        f"{args.job_id} {name}: {len(result.manifest.files)} files, {_mb(result.manifest.bytes)}, sha256 verified, "
        f"in {result.path}{kept}"
    )
    return 0


async def cmd_artifacts(client: Client, args) -> int:
    infos = await client.artifacts(args.job_id)
    if args.json:
        print(msgspec.json.encode(infos).decode())
        return 0
    if not infos:
        print(f"{args.job_id}: no stored artifacts yet")
        return 0
    for i in infos:
        state = "" if i.present else "  (pruned or not reachable from here)"
        print(f"{i.name:<18} step {i.step if i.step is not None else '-':>6}  {_mb(i.bytes):>12}  {i.uri}{state}")
    return 0


async def cmd_prune(client: Client, args) -> int:
    removed = await client.prune(args.job_id, keep=args.keep)
    if args.json:
        print(msgspec.json.encode(removed).decode())
        return 0
    if not removed:
        print(f"{args.job_id}: nothing to prune")
    for i in removed:
        print(f"deleted {i.name} ({_mb(i.bytes)}) {i.uri}")
    return 0


COMMANDS = {"pull": cmd_pull, "artifacts": cmd_artifacts, "prune": cmd_prune}
