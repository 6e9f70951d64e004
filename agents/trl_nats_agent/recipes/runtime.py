"""Where a rank runs: its command line, job spec, device, precision and process group.

Lives here: the recipe's command line (see ``contract`` for the whole agent/recipe contract), reading the
job spec, the device and dtype choice, joining and leaving torchrun's process group, and
:class:`RecipeError`, the one exception that means "this job cannot run as specified".
Does not live here: rows (``data``), models (``modeling``), the Trainer (``trainer``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from trl_nats.messages import BadMessage, JobKind, JobSpec, TrainingParams, decode, validate_spec

from .contract import DEVICE_ENV

if TYPE_CHECKING:
    from .events import EventEmitter


class RecipeError(Exception):
    """The job cannot run as specified; a retry cannot help. The message is one sentence saying what to change."""


@dataclass(frozen=True)
class RecipeArgs:
    spec: Path
    dataset: Path
    eval_dataset: Path | None
    output: Path
    resume: str | None  # None, "auto", or a checkpoint directory


def parse_args(argv: list[str] | None, prog: str) -> RecipeArgs:
    parser = argparse.ArgumentParser(prog=prog, description="Run one trl-nats training job on this rank.")
    parser.add_argument("--spec", required=True, type=Path, help="the JobSpec as JSON")
    parser.add_argument("--dataset", required=True, type=Path, help="training rows, JSON lines")
    parser.add_argument("--eval-dataset", type=Path, default=None, help="evaluation rows, JSON lines")
    parser.add_argument("--output", required=True, type=Path, help="where checkpoints and the final model go")
    parser.add_argument(
        "--resume",
        default=None,
        help="'auto': continue from the newest complete checkpoint in --output, if any; or a checkpoint directory",
    )
    ns = parser.parse_args(argv)
    return RecipeArgs(ns.spec, ns.dataset, ns.eval_dataset, ns.output.resolve(), ns.resume)


def load_spec(path: Path, kind: JobKind) -> JobSpec:
    try:
        spec = validate_spec(decode(path.read_bytes(), JobSpec))
    except OSError as exc:
        raise RecipeError(f"cannot read the job spec {path}: {exc}") from None
    except BadMessage as exc:
        raise RecipeError(f"bad job spec {path}: {exc}") from None
    if spec.kind is not kind:
        raise RecipeError(f"job {spec.job_id} is a {spec.kind.value} job, this is the {kind.value} recipe")
    return spec


def quiet_libraries() -> None:
    """Progress bars are carriage-return noise in the agent's log (events carry progress instead), and the
    hub client's retry warnings would bury the one sentence a failed model load ends with."""
    import logging

    import datasets
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    for name in ("huggingface_hub", "huggingface_hub.utils._http", "urllib3.connectionpool"):
        logging.getLogger(name).setLevel(logging.ERROR)


def choose_device() -> str:
    device = os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise RecipeError(f"{DEVICE_ENV}={device!r}: use 'cpu' or 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"{DEVICE_ENV}=cuda but torch sees no CUDA device")
    return device


# -- the process group --------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rank_from_env() -> int:
    return int(os.environ.get("RANK", 0))


def init_distributed(device: str) -> DistInfo:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA); a no-op for a plain process."""
    rank = rank_from_env()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank, local_rank, world_size)


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def teardown_distributed(ok: bool) -> None:
    """Leave the process group. Gloo can abort at interpreter exit without this."""
    if not dist.is_initialized():
        return
    if ok:
        dist.barrier()  # only on success: after a failure the other ranks may never arrive
    dist.destroy_process_group()


# -- precision ----------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    load_dtype: torch.dtype  # dtype the weights are loaded in
    bf16: bool  # autocast to bfloat16
    fp16: bool  # autocast to float16 (weights stay float32: AMP cannot unscale fp16 gradients)

    @property
    def half(self) -> bool:
        return self.bf16 or self.fp16

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp16 autocast" if self.fp16 else str(self.load_dtype)


def choose_precision(params: TrainingParams, device: str, events: EventEmitter) -> Precision:
    dtype = params.dtype
    if device == "cpu":
        if dtype not in ("auto", "float32"):
            events.log(f"dtype {dtype} ignored on CPU: training in float32", "warning")
        return Precision(torch.float32, False, False)
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dtype == "bfloat16":
        return Precision(torch.bfloat16, True, False)
    if dtype == "float16":
        return Precision(torch.float32, False, True)
    return Precision(torch.float32, False, False)
