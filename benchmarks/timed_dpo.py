"""The real DPO recipe with a step clock added: writes each step's end time to $STEP_TIMES_OUT.

Used by dpo_relay_overhead.py; the recipe itself is untouched (same arguments).
"""

from __future__ import annotations

import os
import sys
import time

from transformers import TrainerCallback

from trl_nats_agent.recipes import common, dpo


class StepClock(TrainerCallback):
    def __init__(self, path: str) -> None:
        self.path = path
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())

    def on_train_end(self, args, state, control, **kwargs):
        if int(os.environ.get("RANK", "0")) == 0:
            with open(self.path, "w") as f:
                f.write("\n".join(repr(t) for t in self.times))


class TimedDPORecipe(dpo.DPORecipe):
    def setup(self) -> None:
        super().setup()
        self.trainer.add_callback(StepClock(os.environ["STEP_TIMES_OUT"]))


if __name__ == "__main__":
    sys.exit(common.run_recipe(TimedDPORecipe(common.parse_args(None, prog="timed_dpo"))))
