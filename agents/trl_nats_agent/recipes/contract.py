"""The contract between the node agent and the training recipes it starts under torchrun.

Torch-free on purpose: the agent imports these names without importing a recipe.
Everything the agent hands a rank (arguments, environment variables) and everything a
rank hands back (files, exit codes) is named here once.

    torchrun ... -m trl_nats_agent.recipes.<kind> \
        --spec SPEC.json --dataset ROWS.jsonl [--eval-dataset EVAL.jsonl] --output OUTPUT_DIR [--resume auto|PATH]
"""

from __future__ import annotations

import re

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
# The agent creates OUTPUT_DIR/PAUSE_FLAG to ask rank 0 to save and stop at the next step (recipes/pause.py);
# rank 0 answers with OUTPUT_DIR/PAUSED_MARKER ({"step": N}) once checkpoint-N is saved, and every rank exits 0
# (a non-zero exit would make torchrun stop the other ranks mid-teardown).
PAUSE_FLAG = ".trl_nats_pause"
PAUSED_MARKER = ".trl_nats_paused"

# Exit codes of a recipe process.
EXIT_OK = 0
EXIT_ERROR = 1  # anything else: a retry may help
EXIT_BAD_JOB = 2  # the job cannot run as specified (rows, model, hyperparameters): a retry cannot help


def checkpoint_dir_name(step: int) -> str:
    return f"checkpoint-{step}"
