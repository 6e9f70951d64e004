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


# How a recipe that exits EXIT_BAD_JOB says why: one line on stderr, this prefix and one sentence that
# says what to change. torchrun turns every failed rank into its own exit code 1, so the agent knows a
# permanent failure by this line, and makes the sentence the job's error.
BAD_JOB_PREFIX = "trl-nats recipe error: "

# Set to "1" for every rank by an agent started with --offline: the hub clients never try the network.
HUB_OFFLINE_ENVS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def bad_job_line(sentence: str) -> str:
    """The stderr line of a recipe that exits EXIT_BAD_JOB (only the first line of ``sentence`` is kept)."""
    first = sentence.strip().splitlines()[0] if sentence.strip() else "the job cannot run as specified"
    return BAD_JOB_PREFIX + first


def bad_job_sentence(lines: list[str]) -> str | None:
    """The sentence of the last bad-job line in a recipe's output, if it printed one."""
    for line in reversed(lines):
        at = line.find(BAD_JOB_PREFIX)
        if at >= 0:
            return line[at + len(BAD_JOB_PREFIX) :].strip() or None
    return None
