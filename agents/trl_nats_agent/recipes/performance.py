"""The recipes' automatic performance choices, and the memory estimate they rest on.

Lives here: what a recipe does when a :class:`TrainingParams` performance field is ``None`` ("the recipe
decides"): liger kernels, precomputed reference log-probs, activation checkpointing; and what it decides on
its own, with no spec field: the attention kernel and FSDP2's resharding. Each choice carries the reason that
the recipe logs as an event, so a user sees why a job ran the way it did. ``docs/performance.md`` explains
the rules and the figures behind them.

Does not live here: the mapping of the decided values to TRL's config (``common.base_config_kwargs``) and
the reference log-prob cache (``ref_cache``).

Everything but :func:`device_memory_bytes`, :func:`liger_supports` and :func:`attention_implementation`
is a pure function of its arguments, so the rules are unit-tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from trl_nats.messages import TrainingParams

GIB = 1 << 30
# Bytes each token keeps for the backward pass, per decoder layer and per unit of hidden size, with 2-byte
# activations and no checkpointing. Calibrated on the measured baseline (FACTS.md, GPU section): a 1.10 B Llama
# (16 layers, hidden 2048), 8 pairs x 512 tokens, bf16, live reference: 11.3 GiB with checkpointing, 22.3 GiB
# without, i.e. 8.2 GiB of weights, gradients and Adam states, 2.0 GiB of reference, and 48 bytes x 2048 x 16
# x 8192 tokens = 12 GiB of activations. Liger's fused RMSNorm/SwiGLU/RoPE kernels keep about a third less.
ACTIVATION_BYTES_PER_HIDDEN = 48
LIGER_ACTIVATION_FACTOR = 0.67
# Allocator slack, CUDA context, the chunked LM head and collective buffers, beyond the estimate.
OVERHEAD_BYTES = 2 * GIB
# Share of the device's memory the estimate may fill before checkpointing is switched on: the caching
# allocator's peak *reserved* memory runs above the peak *allocated* memory the estimate models.
MEMORY_BUDGET = 0.85
# Precompute the reference when the run feeds at least this share of the dataset's pairs through the
# policy: below it, a live reference forward on the pairs actually used costs less than one pass over all.
PRECOMPUTE_MIN_COVERAGE = 0.5
# The length the estimate assumes when neither the spec nor the data decided one.
DEFAULT_MAX_LENGTH = 1024
# peft keeps a LoRA adapter in float32 whatever the base model's dtype (``autocast_adapter_dtype``): its
# weights, gradients and Adam's two states take 4 bytes each.
ADAPTER_BYTES = 4


@dataclass(frozen=True)
class Choice:
    on: bool
    reason: str

    def line(self, name: str) -> str:
        return f"{name} {'on' if self.on else 'off'}: {self.reason}"


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from a model; layers/hidden are None for an architecture we cannot read."""

    params: int
    layers: int | None
    hidden: int | None
    model_type: str

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        return cls(
            params=sum(p.numel() for p in model.parameters()),
            layers=getattr(config, "num_hidden_layers", None),
            hidden=getattr(config, "hidden_size", None),
            model_type=str(getattr(model.config, "model_type", "")),
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes one rank needs, split the way the decisions use it."""

    states: int  # weights, gradients and optimizer states of the policy (this rank's shard)
    reference: int  # a live reference model's weights (this rank's shard); 0 when precomputed or with LoRA
    activations: int  # kept for the backward pass, no checkpointing
    activations_checkpointed: int  # with checkpointing: each layer's input plus one layer recomputed
    unsharded_params: int  # what FSDP2 holds extra if it keeps all-gathered weights until the backward

    def peak(self, checkpointing: bool) -> int:
        acts = self.activations_checkpointed if checkpointing else self.activations
        return self.states + self.reference + acts + OVERHEAD_BYTES


def estimate_memory(
    shape: ModelShape,
    *,
    batch_pairs: int,
    max_length: int,
    weight_bytes: int,
    activation_bytes: int,
    shards: int,
    live_reference: bool,
    adapter_params: int | None = None,
    liger: bool = False,
) -> MemoryEstimate:
    """Training memory of one rank: a DPO micro-batch is 2 x batch_pairs sequences (chosen and rejected).

    ``weight_bytes`` is the dtype the weights are held in (gradients and Adam's two states follow it, as in
    TRL with a bf16-loaded model); ``activation_bytes`` the dtype the forward computes in.
    ``adapter_params``: None for a full fine-tune; for LoRA the adapter's parameter count. Then only the
    adapter has gradients and optimizer states (float32, as peft keeps it), the base weights are frozen, and
    the reference is the base with the adapter switched off: no reference copy, live or not.
    """
    n = shape.params
    if adapter_params is None:
        states = n * weight_bytes * 4 // shards
        reference = n * weight_bytes // shards if live_reference else 0
    else:
        states = (n * weight_bytes + adapter_params * ADAPTER_BYTES * 4) // shards
        reference = 0
    tokens = 2 * batch_pairs * max_length
    if shape.layers and shape.hidden:
        per_layer = tokens * shape.hidden * ACTIVATION_BYTES_PER_HIDDEN * activation_bytes // 2
        if liger:
            per_layer = int(per_layer * LIGER_ACTIVATION_FACTOR)
        activations = shape.layers * per_layer
        checkpointed = shape.layers * tokens * shape.hidden * activation_bytes + per_layer
    else:
        activations = checkpointed = 0
    unsharded = n * weight_bytes - n * weight_bytes // shards
    return MemoryEstimate(states, reference, activations, checkpointed, unsharded)


@dataclass(frozen=True)
class PerformancePlan:
    liger: Choice
    precompute_ref: Choice
    activation_checkpointing: Choice
    reshard_after_forward: Choice
    estimate: MemoryEstimate | None
    device_memory: int | None

    def lines(self) -> list[str]:
        lines = [
            self.liger.line("liger kernels"),
            self.precompute_ref.line("precomputed reference log-probs"),
            self.activation_checkpointing.line("activation checkpointing"),
        ]
        if self.reshard_after_forward.reason:
            lines.append(self.reshard_after_forward.line("FSDP2 reshard after forward"))
        return lines


def plan_performance(
    params: TrainingParams,
    shape: ModelShape,
    *,
    device: str,
    weight_bytes: int,
    activation_bytes: int,
    world_size: int,
    local_world_size: int,
    fsdp: bool,
    rows: int,
    steps: int,
    device_memory: int | None,
    liger_supported: bool,
    uses_reference: bool,
    adapter_params: int | None = None,
    max_length: int | None = None,
) -> PerformancePlan:
    """Decide every performance setting the spec leaves to the recipe; an explicit spec value always wins.

    ``uses_reference``: DPO with a reference that is the initial policy (SFT passes False).
    ``adapter_params``: None for a full fine-tune, else the LoRA adapter's parameter count (see
    :func:`estimate_memory`).
    ``max_length``: the sequence length the run uses (default: the spec's).
    """
    liger = _liger_choice(params.liger, device, liger_supported, shape.model_type)
    precompute = _precompute_choice(params, uses_reference, rows, steps, world_size)

    shards = world_size if fsdp else 1
    estimate = estimate_memory(
        shape,
        batch_pairs=params.per_device_batch_size,
        max_length=max_length or params.max_length or DEFAULT_MAX_LENGTH,
        weight_bytes=weight_bytes,
        activation_bytes=activation_bytes,
        shards=shards,
        live_reference=uses_reference and not precompute.on,
        adapter_params=adapter_params,
        liger=liger.on,
    )
    budget = int(device_memory * MEMORY_BUDGET) if device_memory else None

    if params.activation_checkpointing is not None:
        checkpointing = Choice(params.activation_checkpointing, "set in the job spec")
    elif budget is None or not (shape.layers and shape.hidden):
        # Unknown memory or model shape: the safe side on GPUs, the fast side on CPU (RAM is rarely the limit).
        checkpointing = Choice(device == "cuda", f"no memory estimate possible ({device})")
    else:
        need = estimate.peak(checkpointing=False)
        fits = need <= budget
        checkpointing = Choice(
            not fits,
            f"estimated peak {need / GIB:.1f} GiB {'fits' if fits else 'exceeds'} "
            f"{MEMORY_BUDGET:.0%} of {device_memory / GIB:.1f} GiB per rank",
        )

    if not fsdp:
        reshard = Choice(True, "")
    elif device != "cuda" or params.cpu_offload:
        reshard = Choice(True, "always on CPU and with CPU offload")
    elif world_size != local_world_size:
        reshard = Choice(True, "ranks span several nodes: memory first")
    else:
        need = estimate.peak(checkpointing.on) + estimate.unsharded_params
        keep = budget is not None and need <= budget
        reshard = Choice(
            not keep,
            f"one node; keeping the gathered weights needs {need / GIB:.1f} GiB "
            f"({'fits' if keep else 'does not fit'}): {'saves' if keep else 'would save'} an all-gather per layer "
            "in the backward",
        )
    return PerformancePlan(liger, precompute, checkpointing, reshard, estimate, device_memory)


def _liger_choice(requested: bool | None, device: str, supported: bool, model_type: str) -> Choice:
    if requested is False:
        return Choice(False, "set in the job spec")
    if device != "cuda":
        why = "its Triton kernels need CUDA"
    elif not supported:
        installed = importlib.util.find_spec("liger_kernel") is not None
        why = (
            f"liger-kernel has no kernels for model type {model_type!r}"
            if installed
            else "liger-kernel is not installed (pip install 'trl-nats-agent[gpu]')"
        )
    else:
        return Choice(True, "set in the job spec" if requested else f"supported for {model_type} on CUDA")
    return Choice(False, why + (": ignored" if requested else ""))


def _precompute_choice(params: TrainingParams, uses_reference: bool, rows: int, steps: int, world_size: int) -> Choice:
    if not uses_reference:
        return Choice(False, "no reference model")
    if params.precompute_ref is not None:
        return Choice(params.precompute_ref, "set in the job spec")
    used = steps * params.per_device_batch_size * params.gradient_accumulation_steps * world_size
    coverage = used / max(1, rows)
    on = coverage >= PRECOMPUTE_MIN_COVERAGE
    return Choice(
        on,
        f"the run feeds {used:,} pairs ({coverage:.0%} of {rows:,}): "
        + (
            "one reference pass over the dataset, then no reference model in memory"
            if on
            else "a live reference is cheaper"
        ),
    )


# -- what the machine and the installed packages offer ---------------------------------------


def device_memory_bytes(device: str, local_rank: int, local_world_size: int) -> int | None:
    """Memory one rank may use: its GPU's, or its share of this machine's RAM."""
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(local_rank).total_memory)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    return ram // max(1, local_world_size)


def liger_supports(model_type: str) -> bool:
    """liger-kernel is installed and has kernels for this model family (its own table, so new families count)."""
    if importlib.util.find_spec("liger_kernel") is None:
        return False
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except Exception:  # an install without a working Triton, or a renamed table
        return False
    return model_type in MODEL_TYPE_TO_APPLY_LIGER_FN


def attention_implementation(device: str, half_precision: bool) -> str | None:
    """FlashAttention 2 on a CUDA GPU with bf16/fp16 when flash-attn is installed; else None (transformers' SDPA).

    SDPA itself dispatches to a flash kernel on Hopper/Ampere when the batch needs no padding mask.
    """
    if device != "cuda" or not half_precision or importlib.util.find_spec("flash_attn") is None:
        return None
    import torch

    major, _ = torch.cuda.get_device_capability()
    return "flash_attention_2" if major >= 8 else None
