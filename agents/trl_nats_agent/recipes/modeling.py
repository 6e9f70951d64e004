"""The model and tokenizer a job names, loaded the way every recipe loads them, and its LoRA adapter.

Lives here: resolving the spec's model (a directory on the node or a hub id), loading the tokenizer and
the causal LM in the training dtype, the chat-template check, the model's context length, and the peft
``LoraConfig`` of ``params.lora``. A model that cannot be loaded is a :class:`RecipeError` whose sentence
says what to change (a hub that cannot be reached is said so, not replayed as the hub client's log).
Does not live here: wrapping the model for training (``trainer``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trl_nats.messages import JobSpec, LoraParams

from .contract import ALLOW_REMOTE_CODE_ENV
from .runtime import Precision, RecipeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ALL_LINEAR = "all-linear"
# A tokenizer's model_max_length above this is transformers' "no limit" placeholder, not a context length.
_NO_LIMIT = 1_000_000


def model_path(model: str) -> str:
    """A local directory as an absolute path (so ``config._name_or_path`` reloads from anywhere), else the hub id."""
    local = Path(model).expanduser()
    return str(local.resolve()) if local.is_dir() else model


def trust_remote_code(spec: JobSpec) -> bool:
    """The spec asks for it AND the agent's operator allowed it (the agent also refuses such jobs up front)."""
    return spec.trust_remote_code and os.environ.get(ALLOW_REMOTE_CODE_ENV) == "1"


def hub_offline() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _looks_like_a_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in model


def check_model_reachable(model: str) -> None:
    """Fail at once, before any download attempt, for a model that cannot be found without the hub."""
    if Path(model).expanduser().is_dir():
        return
    if _looks_like_a_path(model):
        raise RecipeError(f"model {model!r} is not a directory on this node: give the path of a model directory")
    if hub_offline():
        raise RecipeError(
            f"model {model!r} is not a directory on this node and the node runs offline (HF_HUB_OFFLINE): "
            "give the path of a model directory on the node"
        )


def unloadable(what: str, model: str, exc: BaseException) -> RecipeError:
    """One sentence for a model or tokenizer that did not load, instead of the hub client's log."""
    text = str(exc)
    if "couldn't connect" in text or "Connection" in type(exc).__name__ or "offline" in text.lower():
        why = "the hub cannot be reached from this node and the files are not in its cache"
        fix = "give the path of a model directory on the node"
    elif "not a valid model identifier" in text or "Repository Not Found" in text or "404" in text:
        why = "it is neither a directory on this node nor a model on the hub"
        fix = "check the model name"
    else:
        why = (text.strip().splitlines() or [type(exc).__name__])[0][:300]
        fix = "give a model directory that transformers can load"
    return RecipeError(f"cannot load the {what} of model {model!r}: {why}; {fix}")


def load_tokenizer(spec: JobSpec) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    check_model_reachable(spec.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path(spec.model), trust_remote_code=trust_remote_code(spec))
    except (OSError, ValueError, KeyError) as exc:
        raise unloadable("tokenizer", spec.model, exc) from None
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
    except (OSError, ValueError, KeyError) as exc:
        if attn_implementation:  # a model family without that kernel: its default attention will do
            return load_model(spec, precision)
        raise unloadable("weights", spec.model, exc) from None


def check_chat_template(tokenizer: PreTrainedTokenizerBase, conversational: bool, spec: JobSpec) -> None:
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise RecipeError(
            f"the dataset is conversational but the tokenizer of {spec.model!r} has no chat template: "
            "use plain-text rows or a model whose tokenizer has one"
        )


def context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The longest sequence the model was built for: its position table, capped by the tokenizer's limit."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    known = [int(n) for n in limits if isinstance(n, int) and 0 < n < _NO_LIMIT]
    return min(known) if known else None


def _lora_targets(lora: LoraParams) -> str | list[str]:
    modules = lora.target_modules or ALL_LINEAR
    return ALL_LINEAR if modules == [ALL_LINEAR] else modules


def lora_parameter_count(model: PreTrainedModel, lora: LoraParams) -> int:
    """The parameters the adapter of ``lora`` adds to ``model``, before peft builds it (for the memory estimate).

    peft's matching: "all-linear" is every ``nn.Linear`` but the output head; a list names modules by their full
    name or its last dotted parts. Each targeted linear layer gets A (rank x in) and B (out x rank).
    """
    import torch

    targets = _lora_targets(lora)
    head = model.get_output_embeddings()
    total = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        if targets == ALL_LINEAR or any(name == t or name.endswith("." + t) for t in targets):
            total += lora.rank * (module.in_features + module.out_features)
    return total


def lora_config(spec: JobSpec) -> Any:
    """peft's LoraConfig for ``params.lora``; target modules None or ["all-linear"] mean every linear layer."""
    try:
        from peft import LoraConfig
    except ImportError:
        raise RecipeError(
            "params.lora needs the peft package on the agent: pip install 'trl-nats-agent[lora]'"
        ) from None
    lora = spec.params.lora
    assert lora is not None
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_lora_targets(lora),
        task_type="CAUSAL_LM",
    )
