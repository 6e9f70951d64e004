"""Run the DPO recipe unchanged, and record on each rank what it holds when training starts.

Used by tests/test_recipe.py under ``torchrun``:

    torchrun --nproc_per_node=2 tests/fsdp_shard_probe.py PROBE_DIR --spec ... --dataset ... --output ...

Writes ``PROBE_DIR/rank<R>.json`` with, for the policy and the reference
model, every parameter's name, whether it is a DTensor, and its local and
global element counts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from torch.distributed.tensor import DTensor
from transformers import TrainerCallback
from trl_nats_agent.recipes import dpo, failures, runtime


def describe(model) -> list[dict]:
    out = []
    for name, param in model.named_parameters():
        is_dtensor = isinstance(param, DTensor)
        local = param.to_local().numel() if is_dtensor else param.numel()
        out.append({"name": name, "dtensor": is_dtensor, "local": local, "global": param.numel()})
    return out


class ShardProbe(TrainerCallback):
    def __init__(self, recipe: dpo.DPORecipe, probe_dir: Path) -> None:
        self.recipe = recipe
        self.probe_dir = probe_dir

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        trainer = self.recipe.trainer
        report = {
            "rank": int(os.environ["RANK"]),
            "world_size": int(os.environ["WORLD_SIZE"]),
            "policy": describe(model),
            "reference": describe(trainer.ref_model) if trainer.ref_model is not None else [],
        }
        (self.probe_dir / f"rank{report['rank']}.json").write_text(json.dumps(report))


def main() -> int:
    probe_dir = Path(sys.argv[1])
    recipe = dpo.DPORecipe(runtime.parse_args(sys.argv[2:], prog="fsdp_shard_probe"))
    setup = recipe.setup

    def setup_with_probe() -> None:
        setup()
        recipe.trainer.add_callback(ShardProbe(recipe, probe_dir))

    recipe.setup = setup_with_probe
    return failures.run_recipe(recipe)


if __name__ == "__main__":
    sys.exit(main())
