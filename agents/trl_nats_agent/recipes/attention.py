"""Per-sequence SDPA for packed rows: attention costs the sum of each sequence's squared length, not the row's.

Left to itself, transformers serves a packed row under ``sdpa`` with a dense (row x row) block-diagonal mask
built from the restarting positions: SDPA then scores every pair of tokens in the row, those of different
sequences included, and an explicit mask rules out its causal fast path. For a row of ``T`` tokens made of
sequences of lengths ``l_i`` that is ``T^2`` scores per head where ``sum(l_i^2) / 2`` are needed, plus the
``T^2`` mask itself: on a length-skewed DPO micro-batch it costs more than the padded batch it replaces.

:data:`NAME` is an attention implementation registered with transformers' ``AttentionInterface`` (and a
mask function with ``AttentionMaskInterface``). A packed call (``packing.install``) passes the sequence
boundaries as ``cu_seq_lens_q`` (the keyword FlashAttention varlen uses) and runs inside :func:`packed_call`:
no mask is built, and each sequence gets its own causal SDPA call on its slice of the row, so the kernel's
causal path applies and nothing crosses a sequence boundary. Every other call (generation, evaluation
without packing, a call outside :func:`packed_call`) is plain ``sdpa`` with its usual mask, unchanged.

Only ``sdpa`` models switch to it: FlashAttention (CUDA) already runs packed rows as varlen from the
restarting positions, and ``eager``/``flex_attention`` keep the mask path they are shown correct with.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator
from typing import Any

import torch

NAME = "trl_nats_sdpa_varlen"
# The implementation a model must have to switch to NAME (its non-packed calls stay exactly that).
BASE = "sdpa"

_packed = contextvars.ContextVar("trl_nats_packed_call", default=False)


@contextlib.contextmanager
def packed_call() -> Iterator[None]:
    """Within: the attention masks of ``NAME`` models are not built (attention is confined by ``cu_seq_lens_q``)."""
    token = _packed.set(True)
    try:
        yield
    finally:
        _packed.reset(token)


def _mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    from transformers.masking_utils import sdpa_mask

    return None if _packed.get() else sdpa_mask(*args, **kwargs)


def varlen_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *args: Any,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``sdpa``; for a packed row (``cu_seq_lens_q`` given), one causal SDPA call per sequence.

    ``query``/``key``/``value``: ``(1, heads, T, head_dim)``; ``cu_seq_lens_q``: ``[0, l_1, l_1 + l_2, ..., T]``.
    Returns ``(1, T, heads, head_dim)`` like ``sdpa_attention_forward``.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if cu_seq_lens_q is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)
    if cu_seq_lens_k is not None and not torch.equal(cu_seq_lens_k, cu_seq_lens_q):
        raise ValueError("packed attention needs the same sequence boundaries for queries and keys (no cache)")
    if attention_mask is not None or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        raise ValueError(
            f"packed attention takes one packed row without a mask and without a cache; got queries "
            f"{tuple(query.shape)}, keys {tuple(key.shape)}, mask {'given' if attention_mask is not None else 'none'}"
        )
    bounds = cu_seq_lens_q.tolist()
    if bounds[0] != 0 or bounds[-1] != query.shape[2]:
        raise ValueError(f"sequence boundaries {bounds} do not span the packed row of {query.shape[2]} tokens")
    # split, not slicing: the backward of a slice fills a zero gradient of the whole row for every sequence
    lengths = [e - s for s, e in itertools.pairwise(bounds)]
    outputs = [
        sdpa_attention_forward(module, q, k, v, None, *args, is_causal=True, **kwargs)[0]
        for q, k, v in zip(
            query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2), strict=True
        )
    ]
    return torch.cat(outputs, dim=1), None


def register() -> None:
    """Make :data:`NAME` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_sdpa_forward)
    AttentionMaskInterface.register(NAME, _mask)


def switch(model: Any) -> bool:
    """Give an ``sdpa`` model :data:`NAME` (its non-packed calls unchanged); whether it now has it."""
    config = model.config
    current = getattr(config, "_attn_implementation", None)
    if current == NAME:
        return True
    if current != BASE:
        return False
    register()
    config._attn_implementation = NAME
    return True
