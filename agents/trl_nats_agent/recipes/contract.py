"""The contract between the node agent and the training recipes it starts under torchrun.

Torch-free on purpose: the agent imports these names without importing a recipe.
Everything the agent hands a rank (arguments, environment variables) and everything a
rank hands back (files, exit codes) is named here once.

    torchrun ... -m trl_nats_agent.recipes.<kind> \
        --spec SPEC.json --dataset ROWS.jsonl [--eval-dataset EVAL.jsonl] --output OUTPUT_DIR [--resume auto|PATH]
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# Environment the agent sets for every rank.
DEVICE_ENV = "TRL_NATS_DEVICE"  # cpu | cuda (unset: cuda when available)
EVENTS_SOCKET_ENV = "TRL_NATS_EVENTS_SOCKET"  # rank 0 writes events here (unset: no events)
JOB_ID_ENV = "TRL_NATS_JOB_ID"
ATTEMPT_ENV = "TRL_NATS_ATTEMPT"
ALLOW_REMOTE_CODE_ENV = "TRL_NATS_ALLOW_REMOTE_CODE"  # "1" when the agent allows trust_remote_code
CACHE_DIR_ENV = "TRL_NATS_CACHE_DIR"  # reference log-prob cache shared by a node's jobs

# Files a recipe writes under OUTPUT_DIR.
FINAL_DIR = "final"
DATASETS_CACHE_DIR = ".hf_datasets"
# Written into checkpoint-N once every rank has saved its part; a checkpoint without it is incomplete.
COMPLETE_MARKER = "trl_nats_complete.json"
CHECKPOINT_DIR_RE = re.compile(r"^checkpoint-(\d+)$")
# Written by a rank that fails in a way no retry can fix (see EXIT_BAD_JOB). torchrun exits 1 whatever its
# workers' codes were, so the agent reads this file, not torchrun's exit code, to tell a bad job from a fault.
FAILURE_FILE = "trl_nats_failure.json"

# Exit codes of a recipe process.
EXIT_OK = 0
EXIT_ERROR = 1  # anything else: a retry may help
EXIT_BAD_JOB = 2  # the job cannot run as specified (rows, model, hyperparameters): a retry cannot help


def checkpoint_dir_name(step: int) -> str:
    return f"checkpoint-{step}"


@dataclass(frozen=True)
class RecipeFailure:
    """What a rank reported before exiting non-zero: its exit code and the one sentence for the user."""

    exit_code: int
    reason: str

    @property
    def permanent(self) -> bool:
        return self.exit_code == EXIT_BAD_JOB


def write_failure(output_dir: Path, failure: RecipeFailure) -> None:
    """Record a failure in OUTPUT_DIR (whole file or none: written aside, then renamed)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / f".{FAILURE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"exit_code": failure.exit_code, "reason": failure.reason}))
    os.replace(tmp, output_dir / FAILURE_FILE)


def read_failure(output_dir: Path) -> RecipeFailure | None:
    """The failure a rank of the last attempt recorded in OUTPUT_DIR, if any (the agent calls this)."""
    try:
        raw = json.loads((output_dir / FAILURE_FILE).read_text())
        return RecipeFailure(int(raw["exit_code"]), str(raw["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_failure(output_dir: Path) -> None:
    """Forget a previous attempt's failure; the agent calls this before it starts an attempt."""
    (output_dir / FAILURE_FILE).unlink(missing_ok=True)
