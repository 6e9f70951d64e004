"""Padding-free DPO: every micro-batch's sequences packed into one row, no padding token computed.

TRL's DPOTrainer turns ``padding_free`` off (FACTS.md), so a padded DPO batch pays for every pad its
shortest sequences carry: with real, length-skewed preference data, most of the batch. Here the padded
batch TRL's collator builds (chosen and rejected, prompt included, right-padded) is unpadded inside the
model call: the real tokens of all sequences go into one row, positions restart at 0 for each sequence,
and ``attention_mask`` is left out. Attention stays within each sequence: an ``sdpa`` model runs one causal
SDPA call per sequence (``attention``: no row-by-row mask, attention costs the sum of squared lengths);
FlashAttention runs the row as varlen from the restarting positions, and ``eager``/``flex_attention`` get
the block-diagonal mask transformers derives from them. The labels are shifted
within each sequence, TRL's fused LM head scores the packed row, and every per-token output is scattered
back to the padded layout, so TRL's DPO loss, metrics and reference log-probs (live or precomputed) run
unchanged on the same numbers.

Where packing is not shown correct (a model family other than :data:`SHOWN_CORRECT`, or an attention
kernel that ignores position-derived masks) the recipe falls back to length-grouped batches, and says so in a
``performance:`` event; ``params.padding_free`` overrides the choice either way.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch

from . import attention
from .performance import Choice

# Model families whose padded and packed losses and gradients are tested equal (tests/test_packing.py).
SHOWN_CORRECT = frozenset({"llama"})
# Attention kernels that honour the per-sequence mask transformers builds from restarting positions.
PACKABLE_ATTENTION = frozenset(
    {"sdpa", attention.NAME, "eager", "flash_attention_2", "flash_attention_3", "flex_attention"}
)


def choose(requested: bool | None, model: Any) -> Choice:
    model_type = str(getattr(model.config, "model_type", ""))
    kernel = str(getattr(model.config, "_attn_implementation", None) or "sdpa")
    if requested is not None:
        return Choice(requested, "set in the job spec" + ("" if requested else ": length-grouped batches instead"))
    if kernel not in PACKABLE_ATTENTION:
        return Choice(False, f"attention {kernel} cannot confine attention to each sequence: length-grouped batches")
    if model_type not in SHOWN_CORRECT:
        return Choice(False, f"not yet shown correct for model type {model_type!r}: length-grouped batches")
    per_sequence = ", each sequence attended on its own" if kernel in (attention.BASE, attention.NAME) else ""
    return Choice(True, f"shown correct for {model_type} with {kernel} attention: no padding computed{per_sequence}")


def pack_padded(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """A right-padded batch as one packed row: ids, restarting positions, labels shifted within each sequence."""
    keep = attention_mask.bool()
    lengths = keep.sum(dim=1)
    starts = torch.cumsum(lengths, 0) - lengths
    flat_index = torch.arange(int(lengths.sum()), device=input_ids.device)
    position_ids = flat_index - torch.repeat_interleave(starts, lengths)
    # Each token's label is its successor in the same sequence; a sequence's last token predicts nothing (its
    # successor is a pad, labelled -100 by TRL, or past the end of the row).
    shifted = torch.full_like(labels, -100)
    shifted[:, :-1] = labels[:, 1:]
    return {
        "input_ids": input_ids[keep].unsqueeze(0),
        "position_ids": position_ids.unsqueeze(0),
        "shift_labels": shifted[keep].unsqueeze(0),
        "keep": keep,
        "cu_seq_lens": torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)]).to(torch.int32),
    }


def unpack(per_token: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    """A packed row's per-token output in the padded layout TRL expects: (batch, seq_len - 1), zeros at pads."""
    if per_token is None:
        return None
    full = per_token.new_zeros(keep.shape).masked_scatter(keep, per_token.reshape(-1))
    return full[:, :-1]


def install(model: Any) -> None:
    """Make ``model(..., labels=, fused_lm_head=True)`` (TRL's fused-head call) run packed.

    ``model`` is the causal LM TRL patched with its fused LM head (under a PEFT wrapper, the base model).
    Other calls (generation, a call without a mask) go to the model unchanged. Installing twice is a no-op.
    """
    if getattr(model, "_trl_nats_packed", False):
        return
    model._trl_nats_packed = True
    attention.switch(model)
    fused_forward = model.forward

    @functools.wraps(fused_forward)
    def packed_forward(self: Any, *args: Any, fused_lm_head: bool = False, **kwargs: Any) -> Any:
        attention_mask = kwargs.get("attention_mask")
        labels = kwargs.get("labels")
        if not fused_lm_head or args or attention_mask is None or labels is None or "input_ids" not in kwargs:
            return fused_forward(*args, fused_lm_head=fused_lm_head, **kwargs)
        packed = pack_padded(kwargs.pop("input_ids"), kwargs.pop("attention_mask"), kwargs.pop("labels"))
        keep, bounds = packed.pop("keep"), packed.pop("cu_seq_lens")
        if model.config._attn_implementation == attention.NAME:
            with attention.packed_call():
                out = fused_forward(fused_lm_head=True, **packed, cu_seq_lens_q=bounds, cu_seq_lens_k=bounds, **kwargs)
        else:
            out = fused_forward(fused_lm_head=True, **packed, **kwargs)
        for name in ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask"):
            value = getattr(out, name, None)
            if value is not None:
                setattr(out, name, unpack(value, keep))
        return out

    model.forward = types.MethodType(packed_forward, model)
