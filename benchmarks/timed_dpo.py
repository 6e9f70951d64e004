"""The real DPO recipe with a step clock added from outside; the recipe itself is untouched (same arguments).

Rank 0 writes, when training ends:
- ``$STEP_TIMES_OUT`` (if set): each step's end time (perf_counter), one per line; used by
  dpo_relay_overhead.py.
- ``$STEP_STATS_OUT`` (if set): JSON with the step end times (perf_counter and wall clock), peak memory
  (CUDA allocated, and the process's peak RSS), whether the reference was precomputed, and the model's
  parameter count; used by gpu_dpo.py, which runs this module through a real agent (``--recipe-override
  timed_dpo``).

On CUDA each step end synchronizes first, as shared/bench/trl_dpo_baseline.py's clock does.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import torch
from transformers import TrainerCallback
from trl_nats_agent.recipes import dpo, failures, runtime
from trl_nats_agent.recipes.trainer import parameter_elements


class StepClock(TrainerCallback):
    def __init__(self, recipe: dpo.DPORecipe) -> None:
        self.recipe = recipe
        self.times: list[float] = []
        self.wall: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.wall.append(time.time())

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if int(os.environ.get("RANK", "0")) != 0:
            return
        if os.environ.get("STEP_TIMES_OUT"):
            with open(os.environ["STEP_TIMES_OUT"], "w") as f:
                f.write("\n".join(repr(t) for t in self.times))
        if os.environ.get("STEP_STATS_OUT"):
            trainer = self.recipe.trainer
            cuda = torch.cuda.is_available()
            stats = {
                "perf_counter": self.times,
                "wall": self.wall,
                "peak_mem_bytes": torch.cuda.max_memory_allocated() if cuda else None,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "precompute_ref": bool(trainer.precompute_ref_logps),
                "params": parameter_elements(model)[1] if model is not None else None,
                "device": torch.cuda.get_device_name() if cuda else "cpu",
            }
            with open(os.environ["STEP_STATS_OUT"], "w") as f:
                json.dump(stats, f)


class TimedDPORecipe(dpo.DPORecipe):
    def setup(self) -> None:
        super().setup()
        self.trainer.add_callback(StepClock(self))


if __name__ == "__main__":
    sys.exit(failures.run_recipe(TimedDPORecipe(runtime.parse_args(None, prog="timed_dpo"))))
