"""What every recipe hands TRL: its config, the trainer mixin, and the callback that reports progress.

Lives here: the mapping of :class:`TrainingParams` to TRL's config keywords, the FSDP2 switch and the
FSDP2-on-CPU fix (:class:`RecipeTrainerMixin`), the performance plan's events, and the callback that turns
Trainer events into node-agent events and marks checkpoints complete.
Does not live here: anything specific to one training method, checkpoint discovery and the final save
(``checkpoints``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from trl_nats.messages import TrainingParams

from . import modeling, performance
from .checkpoints import gather_rank_states
from .contract import COMPLETE_MARKER, checkpoint_dir_name
from .events import EventEmitter
from .performance import ModelShape, PerformancePlan
from .runtime import DistInfo, barrier

if TYPE_CHECKING:
    from .run_setup import RunSetup

CHECKPOINTS_PER_RUN = 4

# spec optimizer -> transformers `optim`. "adam" runs torch.optim.Adam (weight decay as an L2 term in the
# gradient, see RecipeTrainerMixin); with weight_decay 0 it is the same update as AdamW. The fused
# implementations (one kernel for all parameters; transformers' own default) are what plain TRL runs.
OPTIM_NAMES = {"adamw": "adamw_torch_fused", "adam": "adamw_torch_fused", "sgd": "sgd"}


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


def config_kwargs(setup: RunSetup) -> dict[str, Any]:
    """Every TrainingParams field as keyword arguments for DPOConfig/SFTConfig (method-specific ones aside).

    The performance fields come from ``setup.plan`` (see ``performance.plan_performance``), which already
    applied the spec's explicit values; ``max_length`` from ``setup.max_length`` (see ``lengths``).
    """
    p = setup.spec.params
    plan, fsdp, device = setup.plan, setup.fsdp, setup.device
    steps = total_steps(p, setup.train.count, setup.dist.world_size)
    save_steps = p.save_steps or max(1, math.ceil(steps / CHECKPOINTS_PER_RUN))
    activation_checkpointing = plan.activation_checkpointing.on
    if p.cpu_offload and not fsdp:
        setup.events.log("cpu_offload needs FSDP (a CUDA job under torchrun): ignored", "warning")
    has_eval = setup.evaluation is not None
    kwargs: dict[str, Any] = dict(
        output_dir=str(setup.args.output),
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
        max_length=setup.max_length,
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
        bf16=setup.precision.bf16,
        fp16=setup.precision.fp16,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        trust_remote_code=setup.trust_remote_code,
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


def plan_performance(setup: RunSetup, *, uses_reference: bool) -> PerformancePlan:
    """Decide the performance settings the spec leaves open, for this model on this node; log each and why."""
    spec, model, precision, dist_info = setup.spec, setup.model, setup.precision, setup.dist
    shape = ModelShape.of(model)
    adapter = modeling.lora_parameter_count(model, spec.params.lora) if spec.params.lora else None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist_info.world_size))
    rows = setup.train.count
    plan = performance.plan_performance(
        spec.params,
        shape,
        device=setup.device,
        weight_bytes=precision.load_dtype.itemsize,
        activation_bytes=2 if precision.half else precision.load_dtype.itemsize,
        world_size=dist_info.world_size,
        local_world_size=local_world,
        fsdp=setup.fsdp,
        rows=rows,
        steps=total_steps(spec.params, rows, dist_info.world_size),
        device_memory=performance.device_memory_bytes(setup.device, dist_info.local_rank, local_world),
        liger_supported=setup.device == "cuda" and performance.liger_supports(shape.model_type),
        uses_reference=uses_reference,
        adapter_params=adapter,
        max_length=setup.planned_length,
    )
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    setup.events.log(f"performance: {shape.params:,} parameters, {precision.name}, attention {attention}")
    for line in plan.lines():
        warned = line.endswith(": ignored") and spec.params.liger
        setup.events.log(f"performance: {line}", "warning" if warned else "info")
    return plan


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
        path = Path(args.output_dir) / checkpoint_dir_name(state.global_step)
        barrier()  # every rank has written its shard of optimizer and RNG state
        gather_rank_states(path, self.dist_info.world_size, self.dist_info.rank)  # other nodes' RNG joins rank 0's
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
