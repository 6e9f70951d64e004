"""Pause at the next step boundary: the recipe's half of ``trl-nats pause``.

The agent asks by creating ``OUTPUT_DIR/.trl_nats_pause`` (see ``trl_nats_agent/pausing.py``) and
keeps it there while the job is ``pausing``. After every optimizer step rank 0 looks for it and
broadcasts what it saw, so every rank, on every node, stops after the same step: the callback sets
``should_save`` (the Trainer writes ``checkpoint-N`` with optimizer, scheduler, RNG state and the
data position, at once, whatever ``save_steps`` says) and ``should_training_stop``. The driver
then skips the final save, rank 0 writes ``OUTPUT_DIR/.trl_nats_paused`` (``{"step": N}``) and every
rank exits 0; a later ``--resume checkpoint-N`` continues exactly where this run stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from .contract import PAUSE_FLAG, PAUSED_MARKER


class PauseCallback(TrainerCallback):
    def __init__(self, output_dir: Path, events: Any, *, is_main: bool) -> None:
        self.flag = output_dir / PAUSE_FLAG
        self.marker = output_dir / PAUSED_MARKER
        self.events = events
        self.is_main = is_main
        self.paused = False
        self.step = 0
        if is_main:  # a request or answer left over from an earlier run in this output dir is not this run's
            for path in (self.flag, self.marker):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def on_step_end(self, args, state, control, **kwargs):
        asked = self.is_main and self.flag.exists()
        if dist.is_initialized() and dist.get_world_size() > 1:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([1 if asked else 0], dtype=torch.int32, device=device)
            dist.broadcast(flag, src=0)
            asked = bool(flag.item())
        if asked and not self.paused:
            self.paused = True
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True
            self.events.log(f"pausing after step {state.global_step}: saving checkpoint-{state.global_step}")
        return control

    def confirm(self) -> None:
        """Tell the agent the run stopped at a pause, after checkpoint-N was saved (rank 0)."""
        if self.is_main:
            self.marker.write_text(json.dumps({"step": self.step}))


def watch(recipe: Any) -> PauseCallback:
    """Add the pause callback to ``recipe.trainer`` (after ``setup()``); its ``paused`` says how train() ended."""
    callback = PauseCallback(recipe.args.output, recipe.events, is_main=int(os.environ.get("RANK", "0")) == 0)
    recipe.trainer.add_callback(callback)
    return callback
