"""A tiny Llama-style model and a real BPE tokenizer, built locally, for tests and demos.

No model can come from a hub on a machine without internet, yet the recipes
must exercise the real loading code (``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained``). This module writes a directory those
calls load: a randomly initialised ``LlamaForCausalLM`` (2 layers, hidden 64)
in safetensors, and a byte-level BPE tokenizer trained on the dataset's own
text (or a built-in corpus) with a small chat template.

The same seed and corpus give byte-identical weights and the same vocabulary.

Usage: ``python -m trl_nats_agent.testing.tiny OUT_DIR [--dataset rows.jsonl] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = [PAD, BOS, EOS, *ROLE_TOKENS]

# One line per message: "<|role|>\n{content}</s>\n". The prompt rendered with
# add_generation_prompt ends in "<|assistant|>\n", a prefix of the same
# conversation rendered with the answer, which DPO and SFT rely on to find
# where the completion starts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

BUILTIN_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Explain gradient descent. Gradient descent follows the negative gradient to reduce a loss.",
    "Write a haiku about the sea. Waves fold into foam; the tide keeps its slow promise; salt wind on the stones.",
    "How many legs does a spider have? A spider has eight legs.",
    "Translate 'good morning' to Spanish. Buenos dias.",
    "Name a prime number greater than ten. Thirteen is a prime number.",
    "Summarize: the meeting moved to Tuesday because the room was booked. The meeting is now on Tuesday.",
    "Is water wet? Water makes other things wet; whether it is wet itself is a matter of definition.",
    "Give me a synonym for happy. Joyful.",
    "I cannot help with that. I am not sure. Sorry, I do not know the answer.",
    "def add(a, b):\n    return a + b\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
]


def corpus_from_jsonl(path: str | Path) -> list[str]:
    """Every string found in the rows of a JSON-lines dataset (prompts, answers, message contents)."""
    texts: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                texts.extend(_strings(json.loads(line)))
    return texts


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def build_tokenizer(corpus_texts: Iterable[str], vocab_size: int = 512):
    """Train a byte-level BPE on the corpus and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Sorted and de-duplicated so the vocabulary does not depend on row order.
    tok.train_from_iterator(sorted(set(corpus_texts)) + BUILTIN_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
        padding_side="right",
    )


def build_tiny_model(
    out_dir: str | Path,
    corpus_texts: Iterable[str] | None = None,
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 512,
) -> Path:
    """Write a tiny Llama model and its tokenizer to ``out_dir``; return the directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus_texts or [], vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trl_nats_agent.testing.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="directory to write the model and tokenizer to")
    parser.add_argument("--dataset", help="JSON-lines dataset whose text trains the tokenizer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    corpus = corpus_from_jsonl(args.dataset) if args.dataset else None
    print(build_tiny_model(args.out_dir, corpus, seed=args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
