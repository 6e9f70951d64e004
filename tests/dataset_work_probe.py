"""Run the DPO recipe unchanged, and record on each rank which dataset work it did itself.

Used by tests/test_performance.py under ``torchrun`` (or as a plain process):

    torchrun --nproc_per_node=2 tests/dataset_work_probe.py PROBE_DIR --spec ... --dataset ... --output ...

Writes ``PROBE_DIR/rank<R>.json`` when training starts: ``mapped``, the name and row count of every
``Dataset.map`` function this rank really ran (a map served from the Arrow cache runs nothing), and
``reference_batches``, how many batches the reference model ran on to precompute log-probs. Counting
happens below the functions that datasets fingerprints, so the probe cannot change what is cached.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback
from trl_nats_agent.recipes import dpo, failures, runtime

MAPPED: list[dict] = []
REFERENCE_BATCHES = [0]

_map_single = Dataset._map_single


@functools.wraps(_map_single)  # datasets reads the signature to fingerprint the map
def _counting_map_single(*args, **kwargs):
    function = kwargs.get("function")
    shard = kwargs.get("shard", args[0] if args else None)
    MAPPED.append({"function": getattr(function, "__name__", str(function)), "rows": len(shard)})
    yield from _map_single(*args, **kwargs)


Dataset._map_single = staticmethod(_counting_map_single)

_compute_ref_log_probs = dpo._DPOTrainer.compute_ref_log_probs


def _counting_compute_ref_log_probs(self, model, inputs):
    REFERENCE_BATCHES[0] += 1
    return _compute_ref_log_probs(self, model, inputs)


dpo._DPOTrainer.compute_ref_log_probs = _counting_compute_ref_log_probs


class Report(TrainerCallback):
    def __init__(self, probe_dir: Path) -> None:
        self.probe_dir = probe_dir

    def on_train_begin(self, args, state, control, **kwargs):
        rank = int(os.environ.get("RANK", 0))
        report = {"rank": rank, "mapped": MAPPED, "reference_batches": REFERENCE_BATCHES[0]}
        (self.probe_dir / f"rank{rank}.json").write_text(json.dumps(report))


def main() -> int:
    probe_dir = Path(sys.argv[1])
    recipe = dpo.DPORecipe(runtime.parse_args(sys.argv[2:], prog="dataset_work_probe"))
    setup = recipe.setup

    def setup_with_probe() -> None:
        setup()
        recipe.trainer.add_callback(Report(probe_dir))

    recipe.setup = setup_with_probe
    return failures.run_recipe(recipe)


if __name__ == "__main__":
    sys.exit(main())
