"""The pieces every training recipe shares; the recipes (``dpo.py``, ``sft.py``) call them in order.

Lives here: the command line and environment contract, the job spec, dataset
validation and loading, model and tokenizer loading, device and precision
choice, the mapping of :class:`TrainingParams` to TRL's config, the FSDP2
switch, the callback that turns Trainer events into node-agent events,
checkpoint discovery and the final save, distributed init and teardown.
Does not live here: anything specific to one training method.

Contract with the node agent (``torchrun ... -m trl_nats_agent.recipes.<kind>``)::

    --spec SPEC.json --dataset ROWS.jsonl [--eval-dataset EVAL.jsonl] --output OUTPUT_DIR [--resume auto]
    TRL_NATS_DEVICE=cpu|cuda           (unset: cuda when available)
    TRL_NATS_EVENTS_SOCKET=/path.sock  (unset: no events)

Outputs: ``OUTPUT_DIR/checkpoint-N`` (Trainer checkpoints: HF-loadable weights,
tokenizer, optimizer, scheduler and RNG state, plus ``trl_nats_complete.json``
once every rank has written its part) and ``OUTPUT_DIR/final`` (the trained
model and tokenizer, ``from_pretrained``-loadable); the datasets' Arrow cache
goes to ``OUTPUT_DIR/.hf_datasets``. Exit code 0 on success, 2
for a bad job (dataset, spec, model), 1 for anything else; the reason goes to
stderr and, from rank 0, as an ``error`` log event.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from trl_nats.messages import BadMessage, JobKind, JobSpec, TrainingParams, decode, validate_spec

from . import pause as pausing
from . import performance
from .events import EventEmitter
from .performance import ModelShape, PerformancePlan

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEVICE_ENV = "TRL_NATS_DEVICE"
FINAL_DIR = "final"
DATASETS_CACHE_DIR = ".hf_datasets"
COMPLETE_MARKER = "trl_nats_complete.json"
CHECKPOINTS_PER_RUN = 4
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

# spec optimizer -> transformers `optim`. "adam" runs torch.optim.Adam (weight decay as an L2 term in the
# gradient, see RecipeTrainerMixin); with weight_decay 0 it is the same update as AdamW. The fused
# implementations (one kernel for all parameters; transformers' own default) are what plain TRL runs.
OPTIM_NAMES = {"adamw": "adamw_torch_fused", "adam": "adamw_torch_fused", "sgd": "sgd"}


class RecipeError(Exception):
    """The job cannot run as specified (bad dataset row, unloadable model, ...); the message says what to fix."""


# -- command line, spec, device ---------------------------------------------------


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


def quiet_progress_bars() -> None:
    """Progress bars are carriage-return noise in the agent's log; events carry progress instead."""
    import datasets
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def choose_device() -> str:
    device = os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise RecipeError(f"{DEVICE_ENV}={device!r}: use 'cpu' or 'cuda'")
    if device == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"{DEVICE_ENV}=cuda but torch sees no CUDA device")
    return device


# -- distributed -------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA); a no-op for a plain process."""
    rank = int(os.environ.get("RANK", 0))
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


# -- datasets ----------------------------------------------------------------------

_ROLES = ("system", "user", "assistant", "tool")


def _check_messages(value: Any, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise RecipeError(f"{where} must be a non-empty list of messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise RecipeError(f"{where}[{i}] must be an object with 'role' and 'content'")
        if msg.get("role") not in _ROLES:
            raise RecipeError(f"{where}[{i}].role must be one of {', '.join(_ROLES)}, got {msg.get('role')!r}")
        if not isinstance(msg.get("content"), str):
            raise RecipeError(f"{where}[{i}].content must be a string")


def _row_format(row: dict[str, Any], kind: JobKind, where: str) -> str:
    """Check one row's fields; return its format name ("standard" or "conversational", with the field set)."""
    if kind is JobKind.dpo:
        fields, required = ("prompt", "chosen", "rejected"), ("prompt", "chosen", "rejected")
    elif "messages" in row:
        fields, required = ("messages",), ("messages",)
    else:
        fields, required = ("prompt", "completion"), ("prompt", "completion")
    for name in required:
        if name not in row:
            if kind is JobKind.sft and "messages" not in row:
                raise RecipeError(f"{where}: missing field '{name}' (sft rows need prompt+completion or messages)")
            raise RecipeError(f"{where}: missing field '{name}'")
    conversational = isinstance(row[fields[0]], list)
    for name in fields:
        value = row[name]
        if conversational:
            _check_messages(value, f"{where}: field '{name}'")
        elif not isinstance(value, str):
            raise RecipeError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
        elif name != "prompt" and not value.strip():
            raise RecipeError(f"{where}: field '{name}' is empty")
    return f"{'conversational' if conversational else 'standard'} {'/'.join(fields)}"


def validate_rows(path: Path, kind: JobKind) -> tuple[int, bool]:
    """Check every row of a JSON-lines dataset; return (row count, conversational?).

    Raises RecipeError naming the row (1-based line number) and field of the first problem.
    """
    first_format: str | None = None
    rows = 0
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read dataset {path}: {exc}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            where = f"{path.name} row {lineno}"
            if not line.strip():
                raise RecipeError(f"{where}: empty line (one JSON object per line, no blank lines)")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecipeError(f"{where}: not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise RecipeError(f"{where}: must be a JSON object, got {type(row).__name__}")
            fmt = _row_format(row, kind, where)
            if first_format is None:
                first_format = fmt
            elif fmt != first_format:
                raise RecipeError(f"{where}: is {fmt} but row 1 is {first_format}; use one format for all rows")
            rows += 1
    if rows == 0:
        raise RecipeError(f"dataset {path} has no rows")
    return rows, (first_format or "").startswith("conversational")


def load_rows(path: Path, kind: JobKind, output_dir: Path, dist_info: DistInfo) -> tuple[Dataset, int, bool]:
    """Validate, then load with ``datasets.load_dataset("json")``: (dataset, rows, conversational?).

    The Arrow cache lives in ``OUTPUT_DIR/.hf_datasets`` (never next to the dataset, which may sit in a source
    tree); each node's local rank 0 builds it, the node's other ranks reuse it, so the ranks of a node share
    its cache files (TRL keys its precomputed reference log-probs on them). Per node, not per job: the nodes
    of a multi-node job each have their own output dir and disk.
    """
    rows, conversational = validate_rows(path, kind)  # every rank checks, so every rank fails the same way
    from datasets import load_dataset

    builds = dist_info.local_rank == 0
    if not builds:
        barrier()
    try:
        ds = load_dataset("json", data_files=str(path), split="train", cache_dir=str(output_dir / DATASETS_CACHE_DIR))
    finally:
        if builds:
            barrier()
    return ds, rows, conversational


# -- model, tokenizer, precision ---------------------------------------------------


@dataclass(frozen=True)
class Precision:
    load_dtype: torch.dtype  # dtype the weights are loaded in
    bf16: bool  # autocast to bfloat16
    fp16: bool  # autocast to float16 (weights stay float32: AMP cannot unscale fp16 gradients)


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


def model_path(model: str) -> str:
    """A local directory as an absolute path (so ``config._name_or_path`` reloads from anywhere), else the hub id."""
    local = Path(model).expanduser()
    return str(local.resolve()) if local.is_dir() else model


REMOTE_CODE_ENV = "TRL_NATS_ALLOW_REMOTE_CODE"


def trust_remote_code(spec: JobSpec) -> bool:
    """The spec asks for it AND the agent's operator allowed it (the agent also refuses such jobs up front)."""
    return spec.trust_remote_code and os.environ.get(REMOTE_CODE_ENV) == "1"


def load_tokenizer(spec: JobSpec) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path(spec.model), trust_remote_code=trust_remote_code(spec))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot load the tokenizer of model {spec.model!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: JobSpec, precision: Precision, attn_implementation: str | None = None) -> PreTrainedModel:
    """The model in the training dtype; ``attn_implementation`` None leaves transformers' default (SDPA)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": precision.load_dtype, "trust_remote_code": trust_remote_code(spec)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(model_path(spec.model), **kwargs)
    except (OSError, ValueError) as exc:
        if attn_implementation:  # a model family without that kernel: its default attention will do
            return load_model(spec, precision)
        raise RecipeError(f"cannot load model {spec.model!r}: {exc}") from None


def check_chat_template(tokenizer: PreTrainedTokenizerBase, conversational: bool, spec: JobSpec) -> None:
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise RecipeError(f"the dataset is conversational but the tokenizer of {spec.model!r} has no chat template")


# -- TrainingParams -> TRL config ---------------------------------------------------


def total_steps(params: TrainingParams, rows: int, world_size: int) -> int:
    """Optimizer steps the Trainer will run: accelerate gives each rank ceil(batches / world) batches."""
    if params.max_steps:
        return params.max_steps
    batches_per_rank = math.ceil(math.ceil(rows / params.per_device_batch_size) / world_size)
    updates_per_epoch = max(1, math.ceil(batches_per_rank / params.gradient_accumulation_steps))
    return updates_per_epoch * params.epochs


def use_fsdp(params: TrainingParams, device: str, dist_info: DistInfo) -> bool:
    """FSDP2 whenever there are several ranks; with one rank only to offload to CPU on CUDA.

    One CPU process trains the plain model: FSDP over a world of one shards nothing and costs wrapping.
    """
    if not dist.is_initialized():
        return False
    return dist_info.world_size > 1 or (device == "cuda" and params.cpu_offload)


def base_config_kwargs(
    spec: JobSpec,
    *,
    output_dir: Path,
    device: str,
    precision: Precision,
    fsdp: bool,
    rows: int,
    world_size: int,
    has_eval: bool,
    plan: PerformancePlan,
    events: EventEmitter,
) -> dict[str, Any]:
    """Every TrainingParams field as keyword arguments for DPOConfig/SFTConfig (method-specific ones aside).

    The performance fields come from ``plan`` (see ``performance.plan_performance``), which already applied
    the spec's explicit values.
    """
    p = spec.params
    steps = total_steps(p, rows, world_size)
    save_steps = p.save_steps or max(1, math.ceil(steps / CHECKPOINTS_PER_RUN))
    activation_checkpointing = plan.activation_checkpointing.on
    if p.cpu_offload and not fsdp:
        events.log("cpu_offload needs FSDP (a CUDA job under torchrun): ignored", "warning")
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        num_train_epochs=p.epochs,
        max_steps=p.max_steps or -1,
        per_device_train_batch_size=p.per_device_batch_size,
        per_device_eval_batch_size=p.per_device_batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps,
        learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler,
        warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay,
        optim=OPTIM_NAMES[p.optimizer],
        max_length=p.max_length,
        seed=p.seed,
        data_seed=p.seed,
        train_sampling_strategy="random" if p.shuffle else "sequential",
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=p.save_total_limit,
        logging_strategy="steps",
        logging_steps=p.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=save_steps if has_eval else None,
        use_cpu=device == "cpu",
        bf16=precision.bf16,
        fp16=precision.fp16,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if fsdp:
        # FSDP2's own activation checkpointing: the Trainer flag would add an all-gather to the backward pass.
        kwargs["fsdp"] = True
        kwargs["fsdp_config"] = {
            "version": 2,
            "reshard_after_forward": plan.reshard_after_forward.on,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "state_dict_type": "FULL_STATE_DICT",
            "cpu_offload": bool(p.cpu_offload and device == "cuda"),
            "activation_checkpointing": bool(activation_checkpointing),
        }
        activation_checkpointing = False
    kwargs["gradient_checkpointing"] = kwargs["activation_checkpointing"] = bool(activation_checkpointing)
    kwargs["use_liger_kernel"] = plan.liger.on
    return kwargs


def plan_performance(
    spec: JobSpec,
    model: PreTrainedModel,
    *,
    device: str,
    precision: Precision,
    dist_info: DistInfo,
    fsdp: bool,
    rows: int,
    uses_reference: bool,
    trainable: bool,
    events: EventEmitter,
) -> PerformancePlan:
    """Decide the performance settings the spec leaves open, for this model on this node; log each and why."""
    shape = ModelShape.of(model)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist_info.world_size))
    plan = performance.plan_performance(
        spec.params,
        shape,
        device=device,
        weight_bytes=precision.load_dtype.itemsize,
        activation_bytes=2 if (precision.bf16 or precision.fp16) else precision.load_dtype.itemsize,
        world_size=dist_info.world_size,
        local_world_size=local_world,
        fsdp=fsdp,
        rows=rows,
        steps=total_steps(spec.params, rows, dist_info.world_size),
        device_memory=performance.device_memory_bytes(device, dist_info.local_rank, local_world),
        liger_supported=device == "cuda" and performance.liger_supports(shape.model_type),
        uses_reference=uses_reference,
        trainable=trainable,
    )
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    precision_name = "bf16" if precision.bf16 else "fp16 autocast" if precision.fp16 else str(precision.load_dtype)
    events.log(f"performance: {shape.params:,} parameters, {precision_name}, attention {attention}")
    for line in plan.lines():
        warned = line.endswith(": ignored") and spec.params.liger
        events.log(f"performance: {line}", "warning" if warned else "info")
    return plan


# -- the Trainer hooks --------------------------------------------------------------


class RecipeTrainerMixin:
    """Mixed into TRL's trainers (``class T(RecipeTrainerMixin, DPOTrainer)``): FSDP2 on CPU, and plain Adam.

    FSDP2 on CPU: transformers builds an accelerate FSDP plugin from ``args.fsdp_config`` and hands it to
    ``Accelerator``, but ``AcceleratorState`` only honours it for GPU-like devices: with gloo on CPU the
    state stays MULTI_CPU and accelerate wraps the model in DDP, silently. Right after the accelerator
    is created, and before TRL prepares the reference model, we switch the shared state to FSDP with
    the same plugin; ``accelerator.prepare`` then runs ``fully_shard`` on every decoder layer and the
    root, TRL shards the reference model, and checkpoints gather a full state dict on rank 0.
    """

    optimizer_name: str = "adamw"

    def __init__(self: Any, *args: Any, optimizer_name: str = "adamw", **kwargs: Any) -> None:
        self.optimizer_name = optimizer_name
        super().__init__(*args, **kwargs)

    def create_accelerator_and_postprocess(self: Any) -> None:
        super().create_accelerator_and_postprocess()  # type: ignore[misc]
        plugin_args = self.args.fsdp_plugin_args
        if plugin_args is None or self.is_fsdp_enabled:
            return  # no FSDP asked for, or accelerate applied it itself (GPUs)
        from accelerate.state import PartialState
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        state = self.accelerator.state
        plugin = FullyShardedDataParallelPlugin(**plugin_args)
        if state.mixed_precision != "no":
            plugin.set_mixed_precision(state.mixed_precision)
        state.fsdp_plugin = plugin
        state.distributed_type = DistributedType.FSDP
        # As AcceleratorState.__init__ does: every later AcceleratorState() copies PartialState's fields over its
        # own, so the type must be recorded there too or the first AcceleratedOptimizer turns it back into DDP.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.is_fsdp_enabled = True

    def get_optimizer_cls_and_kwargs(self: Any, args: Any, model: Any = None) -> tuple[Any, dict[str, Any]]:
        from transformers import Trainer

        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if self.optimizer_name == "adam" and cls is torch.optim.AdamW:
            cls = torch.optim.Adam
        return cls, kwargs


# -- events -------------------------------------------------------------------------


class EventsCallback(TrainerCallback):
    """Trainer callbacks -> node-agent events (rank 0); marks each checkpoint complete once all ranks wrote it."""

    def __init__(self, events: EventEmitter, dist_info: DistInfo) -> None:
        self.events = events
        self.dist_info = dist_info
        self.last_metrics: dict[str, float] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            local, total = parameter_elements(model)
            layout = "sharded" if local < total else "replicated"
            self.events.log(f"policy: {total:,} parameter elements, {local:,} held by rank 0 ({layout})")
        start = f" from step {state.global_step}" if state.global_step else ""
        self.events.log(f"training {state.max_steps} steps{start} on {self.dist_info.world_size} process(es)")

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {k: v for k, v in (logs or {}).items() if k != "epoch"}
        if "loss" in metrics or "eval_loss" in metrics:
            self.last_metrics.update(metrics)
        self.events.metrics(state.global_step, state.max_steps, state.epoch or 0.0, metrics)

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        barrier()  # every rank has written its shard of optimizer and RNG state
        if self.dist_info.is_main:
            marker = {"step": state.global_step, "epoch": state.epoch, "time": time.time()}
            (path / COMPLETE_MARKER).write_text(json.dumps(marker))
            self.events.checkpoint(state.global_step, state.epoch or 0.0, str(path), self.last_metrics)


def parameter_elements(model: torch.nn.Module) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole model): they differ when FSDP2 shards into DTensors."""
    from torch.distributed.tensor import DTensor

    local = total = 0
    for param in model.parameters():
        total += param.numel()
        local += param.to_local().numel() if isinstance(param, DTensor) else param.numel()
    return local, total


# -- checkpoints and the final model -------------------------------------------------


def latest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The highest checkpoint-N in ``output_dir`` that every rank finished writing."""
    if not output_dir.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for child in output_dir.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and (child / COMPLETE_MARKER).is_file() and (best is None or int(match[1]) > best[0]):
            best = (int(match[1]), child)
    return best[1] if best else None


def resume_checkpoint(resume: str | None, output_dir: Path, events: EventEmitter) -> str | None:
    if resume is None or resume in ("", "never", "none"):
        return None
    if resume == "auto":
        found = latest_complete_checkpoint(output_dir)
        events.log(f"resuming from {found}" if found else "no complete checkpoint to resume from: starting fresh")
        return str(found) if found else None
    path = Path(resume)
    if not (path / COMPLETE_MARKER).is_file():
        raise RecipeError(f"--resume {resume}: not a complete checkpoint directory")
    events.log(f"resuming from {path}")
    return str(path)


def save_final_model(trainer: Any, output_dir: Path, dist_info: DistInfo) -> Path:
    """Write the trained model and tokenizer to OUTPUT_DIR/final (all ranks call: FSDP gathers to rank 0)."""
    final = output_dir / FINAL_DIR
    staging = output_dir / f".{FINAL_DIR}.partial"
    if dist_info.is_main and staging.exists():
        shutil.rmtree(staging)
    barrier()
    trainer.save_model(str(staging))
    barrier()
    if dist_info.is_main:
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)  # a reader never sees a half-written final model
    barrier()
    return final


def report_final(trainer: Any, final: Path, events: EventEmitter) -> None:
    """The final checkpoint event, with the run's last logged metrics, and a closing log line."""
    state = trainer.state
    metrics = {k: v for k, v in (state.log_history[-1] if state.log_history else {}).items() if k != "epoch"}
    events.checkpoint(state.global_step, state.epoch or 0.0, str(final), metrics, final=True)
    events.log(f"done: {state.global_step} steps, final model in {final}")


# -- the driver ----------------------------------------------------------------------


class Recipe(Protocol):
    events: EventEmitter

    def setup(self) -> None: ...
    def train(self) -> None: ...
    def save_checkpoint(self) -> None: ...
    def cleanup(self, ok: bool) -> None: ...


def run_recipe(recipe: Recipe) -> int:
    """setup -> train -> save_checkpoint -> cleanup; map failures to an exit code and a message on stderr."""
    ok = False
    try:
        recipe.setup()
        pause = pausing.watch(recipe)
        recipe.train()
        ok = True
        if pause.paused:
            pause.confirm()  # checkpoint-N is saved; no final model yet
            return 0
        recipe.save_checkpoint()
        return 0
    except RecipeError as exc:
        print(f"trl-nats recipe error: {exc}", file=sys.stderr, flush=True)
        recipe.events.log(str(exc), "error")
        return 2
    except Exception as exc:
        traceback.print_exc()
        recipe.events.log(f"{type(exc).__name__}: {exc}", "error")
        return 1
    finally:
        recipe.cleanup(ok)
