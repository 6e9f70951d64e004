"""The benchmarks' tokenizer: word-level over the words ``w0 .. w<n-1>``, one word = one token, so a row's
length in tokens is its length in words (the baseline's construction, in one place)."""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


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
