"""The benchmarks' model and tokenizer, built locally (no hub): a word-level tokenizer over the words
``w0 .. w<n-1>`` (one word = one token, so a row's length in tokens is its length in words) and a randomly
initialised Llama (seed 0) with the tokenizer's special ids. The baseline's construction, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0, 1, 2, 3


def save_word_tokenizer(model_dir: Path, n_words: int) -> tuple[list[str], int]:
    """Write the tokenizer into ``model_dir``; return its words and its vocabulary size (specials included)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(n_words)]
    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    hf_tok.save_pretrained(model_dir)
    return words, len(vocab)


def save_random_llama(model_dir: Path, *, dtype: Any = None, **config: Any) -> int:
    """Write a random-init Llama (``LlamaConfig(**config)``, seed 0, cast to ``dtype`` if given) into
    ``model_dir``, its special ids those of :func:`save_word_tokenizer`; return its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**config)
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id = 0, 1, 2
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(model_dir)
    return sum(p.numel() for p in model.parameters())
