"""The DPO recipe as the node agent runs it (``-m retry_probe``), except that attempt 1 fails after setup.

Setup includes the reference log-prob precompute, so attempt 1 fills the cache and then fails, and the
agent retries. Each attempt logs, as an event, how many batches the reference model ran on during its
own setup (counted by ``dataset_work_probe``): the retry must run none.
"""

from __future__ import annotations

import os
import sys

import dataset_work_probe
from trl_nats_agent.recipes import dpo, failures, runtime


class FailFirstAttempt(dpo.DPORecipe):
    def setup(self) -> None:
        super().setup()
        self.events.log(f"probe: {dataset_work_probe.REFERENCE_BATCHES[0]} reference batches in setup")

    def train(self) -> None:
        if os.environ.get("TRL_NATS_ATTEMPT") == "1":
            raise RuntimeError("probe: attempt 1 fails after setup")
        super().train()


if __name__ == "__main__":
    sys.exit(failures.run_recipe(FailFirstAttempt(runtime.parse_args(None, prog="retry_probe"))))
