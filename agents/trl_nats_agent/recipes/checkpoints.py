"""Checkpoints a recipe resumes from and the final artifact it leaves, for full and LoRA training alike.

Lives here: finding the newest complete ``checkpoint-N``, the ``--resume`` rule, writing ``OUTPUT_DIR/final``
(a reader never sees half of it), merging a LoRA adapter into its base model, and the final checkpoint event.
Does not live here: the completion marker's writer (``trainer.EventsCallback``, once all ranks saved).

Final artifacts: a full fine-tune leaves the model in ``final``. A LoRA run leaves the adapter, in PEFT
format, in ``final_adapter``; ``final`` is then the base model with the adapter merged in (SFT always; DPO
when the spec's ``lora.merge`` asks for it, else ``final`` is the adapter itself).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.distributed as dist

from .contract import CHECKPOINT_DIR_RE, COMPLETE_MARKER, FINAL_DIR
from .events import EventEmitter
from .runtime import RecipeError, barrier

if TYPE_CHECKING:
    from .run_setup import RunSetup

FINAL_ADAPTER_DIR = "final_adapter"


def latest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The highest checkpoint-N in ``output_dir`` that every rank finished writing."""
    if not output_dir.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for child in output_dir.iterdir():
        match = CHECKPOINT_DIR_RE.match(child.name)
        if match and (child / COMPLETE_MARKER).is_file() and (best is None or int(match[1]) > best[0]):
            best = (int(match[1]), child)
    return best[1] if best else None


def gather_rank_states(checkpoint: Path, world_size: int, rank: int) -> None:
    """All ranks call, after every rank saved ``checkpoint``: in a job over several nodes, each rank on another
    node than rank 0 sends the RNG state it wrote (``rng_state_<rank>.pth``, on its own node's disk) to rank 0,
    which adds it to its copy, the one the agent stores. A node that resumes with nothing on its disk then
    restores its ranks' RNG (dropout masks) as a node that kept its files does."""
    if not dist.is_initialized() or world_size <= int(os.environ.get("LOCAL_WORLD_SIZE", world_size)):
        return  # one node: every rank wrote into the checkpoint rank 0 hands over
    name = f"rng_state_{rank}.pth"  # the Trainer's name for a rank's RNG state in a distributed run
    mine = checkpoint / name
    sent = (name, mine.read_bytes()) if os.environ.get("GROUP_RANK", "0") != "0" and mine.is_file() else None
    received: list | None = [None] * world_size if rank == 0 else None
    dist.gather_object(sent, received, dst=0)
    for item in received or []:
        if item is not None:
            (checkpoint / item[0]).write_bytes(item[1])


def resume_checkpoint(resume: str | None, output_dir: Path, events: EventEmitter) -> str | None:
    if resume is None or resume in ("", "never", "none"):
        return None
    if resume == "auto":
        found = latest_complete_checkpoint(output_dir)
        events.log(f"resuming from {found}" if found else "no complete checkpoint to resume from: starting fresh")
        return str(found) if found else None
    path = Path(resume)
    if not (path / COMPLETE_MARKER).is_file():
        raise RecipeError(f"--resume {resume}: not a complete checkpoint directory; resume with 'auto' instead")
    events.log(f"resuming from {path}")
    return str(path)


def save_final_model(trainer: Any, setup: RunSetup) -> Path:
    """Write what the trainer trains (the model, or a PEFT adapter) and the tokenizer to OUTPUT_DIR/final.

    All ranks call: FSDP gathers the full state dict to rank 0.
    """
    output = setup.args.output
    final = output / FINAL_DIR
    staging = output / f".{FINAL_DIR}.partial"
    if setup.dist.is_main and staging.exists():
        shutil.rmtree(staging)
    barrier()
    trainer.save_model(str(staging))
    barrier()
    if setup.dist.is_main:
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)  # a reader never sees a half-written final model
    barrier()
    return final


def keep_adapter_and_merge(setup: RunSetup, saved_adapter: Path, tokenizer: Any, merge: bool) -> Path:
    """Move the saved adapter to ``final_adapter``; with ``merge``, rank 0 reloads the base model, merges the
    adapter into it and writes the result to ``final`` (else ``final`` holds the adapter too)."""
    from . import modeling

    output = setup.args.output
    adapter = output / FINAL_ADAPTER_DIR
    final = output / FINAL_DIR
    if setup.dist.is_main:
        if adapter.exists():
            shutil.rmtree(adapter)
        if merge:
            from peft import PeftModel

            saved_adapter.rename(adapter)
            staging = output / ".final.merging"
            if staging.exists():
                shutil.rmtree(staging)
            base = modeling.load_model(setup.spec, setup.precision)
            merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
            merged.save_pretrained(staging, safe_serialization=True)
            tokenizer.save_pretrained(staging)
            staging.rename(final)
        else:
            shutil.copytree(saved_adapter, adapter)
    barrier()
    return final


def report_final(trainer: Any, final: Path, events: EventEmitter) -> None:
    """The final checkpoint event, with the run's last logged metrics, and a closing log line."""
    state = trainer.state
    metrics = {k: v for k, v in (state.log_history[-1] if state.log_history else {}).items() if k != "epoch"}
    events.checkpoint(state.global_step, state.epoch or 0.0, str(final), metrics, final=True)
    events.log(f"done: {state.global_step} steps, final model in {final}")
