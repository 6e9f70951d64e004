"""A stand-in trainer with no model: it sleeps through ``steps`` steps and reports them.

For tests and benchmarks of the job machinery (claiming, cancel, retries,
event relay, checkpoints and resume) where the real recipe's 5-8 s of imports
would only add noise. It reads the same arguments and job spec as the real
recipes and runs under the same torchrun; only rank 0 reports. Behaviour
comes from the spec's labels:

- ``noop.steps`` (default 5), ``noop.step_s`` (default 0.05)
- ``noop.save_every``: write ``checkpoint-N`` (with the completion marker) every N steps; with
  ``--resume`` (``auto`` or a checkpoint directory) it continues after the checkpoint's step
- ``noop.fail``: "always" exits 1 after the steps; "first" only on attempt 1
- ``noop.fail_rank``: with ``noop.fail``, only this global rank fails, and at once (the others
  go on: a multi-node gang must stop them itself)

Rank 0 reports ``loss``, ``rewards/margins`` and ``rewards/accuracies`` curves, so plots and
progress lines have the shape of a DPO run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from trl_nats.messages import JobSpec, decode
from trl_nats_agent.recipes.contract import COMPLETE_MARKER
from trl_nats_agent.recipes.events import EventEmitter


def _resume_step(resume: str | None, output: Path) -> tuple[int, Path | None]:
    if not resume or resume in ("never", "none"):
        return 0, None
    if resume == "auto":
        found = [
            (int(m[1]), p)
            for p in output.glob("checkpoint-*")
            if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / COMPLETE_MARKER).is_file()
        ]
        if not found:
            return 0, None
        step, path = max(found)
    else:
        path = Path(resume)
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    return int(marker["step"]), path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--spec", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--eval-dataset")
    p.add_argument("--output", required=True)
    p.add_argument("--resume", default="auto")
    args = p.parse_args(argv)
    spec = decode(Path(args.spec).read_bytes(), JobSpec)
    rank = int(os.environ.get("RANK", "0"))
    attempt = int(os.environ.get("TRL_NATS_ATTEMPT", "1"))
    steps = int(spec.labels.get("noop.steps", "5"))
    step_s = float(spec.labels.get("noop.step_s", "0.05"))
    save_every = int(spec.labels.get("noop.save_every", "0"))
    fail = spec.labels.get("noop.fail", "")
    fail_rank = spec.labels.get("noop.fail_rank")
    failing = fail == "always" or (fail == "first" and attempt == 1)
    if fail_rank is not None:
        if failing and rank == int(fail_rank):
            print(f"noop trainer: rank {rank} failing on purpose (attempt {attempt})", file=sys.stderr)
            return 1
        failing = False
    output = Path(args.output)
    events = EventEmitter.from_env(rank)
    start, resumed_from = _resume_step(args.resume, output)
    events.log(
        f"noop trainer: {steps} steps of {step_s}s on rank {rank} of {os.environ.get('WORLD_SIZE', '1')}"
        + (f", resuming from {resumed_from}" if start else "")
    )
    for step in range(start + 1, steps + 1):
        time.sleep(step_s)
        margin = 0.5 * step / steps
        events.metrics(
            step,
            steps,
            step / steps,
            {"loss": 1.0 / step, "rewards/margins": margin, "rewards/accuracies": min(1.0, 0.5 + margin)},
        )
        if rank == 0 and save_every and step % save_every == 0 and step < steps:
            ckpt = output / f"checkpoint-{step}"
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / "state.json").write_text(json.dumps({"step": step}))
            (ckpt / COMPLETE_MARKER).write_text(json.dumps({"step": step, "epoch": step / steps}))
            events.checkpoint(step, step / steps, str(ckpt), {"loss": 1.0 / step})
    if failing:
        print(f"noop trainer: failing on purpose (noop.fail={fail}, attempt {attempt})", file=sys.stderr)
        events.close()
        return 1
    out = output / "final"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "noop.txt").write_text(f"done after {steps} steps, started at {start}\n")
        events.checkpoint(steps, 1.0, str(out), {}, final=True)
    events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
