"""How a recipe ends: setup -> train -> save_checkpoint -> cleanup, and what a failure means.

:func:`classify` is the one decision: a failure a retry cannot fix (bad rows, a model or tokenizer that does
not load, hyperparameters TRL refuses, out of memory at the smallest batch, no row left after the length
budget) exits ``EXIT_BAD_JOB`` with one sentence saying what to change; anything else exits ``EXIT_ERROR``
and the agent may retry. The sentence goes to stderr and, from rank 0, as an ``error`` log event. torchrun hides its workers' exit
codes, so a permanent failure also prints ``contract.bad_job_line(sentence)``: the agent knows it by that line.
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import pause as pausing
from .contract import EXIT_BAD_JOB, EXIT_ERROR, EXIT_OK, bad_job_line
from .events import EventEmitter
from .runtime import RecipeError

_OOM_MARKERS = ("out of memory", "CUDA error: out of memory", "can't allocate memory", "DefaultCPUAllocator")


@dataclass(frozen=True)
class Failure:
    exit_code: int
    sentence: str
    traceback: bool  # print it: an unexpected error, where the stack is the only clue


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MARKERS)


def classify(exc: BaseException, batch_size: int | None) -> Failure:
    """What an exception out of a recipe means for the job (a pure function of the exception and the batch)."""
    if isinstance(exc, RecipeError):
        return Failure(EXIT_BAD_JOB, str(exc), False)
    if is_out_of_memory(exc):
        if batch_size == 1:
            return Failure(
                EXIT_BAD_JOB,
                "out of memory at per_device_batch_size 1: set params.activation_checkpointing true, lower "
                "params.max_length, train with params.lora, or give the job more GPUs",
                False,
            )
        return Failure(
            EXIT_ERROR,
            f"out of memory at per_device_batch_size {batch_size}: lower params.per_device_batch_size and raise "
            "params.gradient_accumulation_steps to keep the effective batch",
            False,
        )
    return Failure(EXIT_ERROR, f"{type(exc).__name__}: {exc}", True)


class Recipe(Protocol):
    events: EventEmitter
    output: Path  # OUTPUT_DIR

    def batch_size(self) -> int | None: ...
    def setup(self) -> None: ...
    def train(self) -> None: ...
    def save_checkpoint(self) -> None: ...
    def cleanup(self, ok: bool) -> None: ...


def run_recipe(recipe: Recipe) -> int:
    """setup -> train -> save_checkpoint -> cleanup; map a failure to its exit code and sentence."""
    ok = False
    try:
        recipe.setup()
        pause = pausing.watch(recipe)
        recipe.train()
        if pause.paused:
            pause.confirm()  # checkpoint-N is saved; no final model yet
        else:
            recipe.save_checkpoint()
        ok = True
        return EXIT_OK
    except Exception as exc:
        failure = classify(exc, recipe.batch_size())
        if failure.traceback:
            traceback.print_exc()
        if failure.exit_code == EXIT_BAD_JOB:
            print(bad_job_line(failure.sentence), file=sys.stderr, flush=True)
        else:
            print(f"trl-nats recipe failed: {failure.sentence}", file=sys.stderr, flush=True)
        recipe.events.log(failure.sentence, "error")
        return failure.exit_code
    finally:
        recipe.cleanup(ok)
