"""The on-disk cache of precomputed DPO reference log-probs, shared by a job's attempts and by jobs.

When the reference is the initial policy, its log-probs of each pair depend only on the dataset, the model,
how the rows are tokenized and the numerics they are computed with. The cache key hashes exactly those (see
:func:`reference_key`), so a retried attempt, or another job on the same data and model (a sweep over beta or
the learning rate), reads them instead of running the reference over the whole dataset again.

Where: ``$TRL_NATS_CACHE_DIR/ref_logps/<key>.safetensors``. The node agent sets ``TRL_NATS_CACHE_DIR`` to
``STATE/cache``; a recipe run by hand falls back to ``OUTPUT_DIR/.trl_nats_cache``. One file per dataset
split: two float32 vectors (chosen, rejected) in the order of the tokenized dataset, and the key's inputs
as metadata for a person to read. Files are written whole (temporary file, then rename), so a reader never
sees half of one and two writers of the same key leave the same content.

Does not live here: computing the log-probs (TRL's ``_precompute_ref_logps``; see ``dpo._DPOTrainer``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .contract import CACHE_DIR_ENV

FALLBACK_DIR = ".trl_nats_cache"
KEY_VERSION = 1


def cache_root(output_dir: Path) -> Path:
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else output_dir / FALLBACK_DIR


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(model_path: str, commit_hash: str | None) -> dict[str, Any]:
    """A local model directory by path and each file's size and modification time (cheap, and changes
    whenever a file is rewritten); a hub model by id and the commit transformers resolved."""
    local = Path(model_path)
    if not local.is_dir():
        return {"id": model_path, "commit": commit_hash}
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in local.iterdir() if f.is_file())
    return {"path": str(local.resolve()), "files": files}


def reference_key(
    *,
    dataset_sha256: str,
    model: dict[str, Any],
    tokenization: dict[str, Any],
    numerics: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """(key, its inputs). ``tokenization``: what turns rows into token ids (max_length, truncation mode, chat
    template, special tokens, TRL version); ``numerics``: what the forward computes with (device, dtype,
    kernels, torch and transformers versions)."""
    inputs = {
        "version": KEY_VERSION,
        "dataset_sha256": dataset_sha256,
        "model": model,
        "tokenization": tokenization,
        "numerics": numerics,
    }
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest(), inputs


@dataclass(frozen=True)
class RefLogpsCache:
    root: Path

    def path(self, key: str) -> Path:
        return self.root / "ref_logps" / f"{key}.safetensors"

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached (chosen, rejected) log-probs, or None when absent or not of ``rows`` rows."""
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            chosen, rejected = tensors["chosen"], tensors["rejected"]
        except (OSError, KeyError, RuntimeError, ValueError):
            return None
        if chosen.shape != (rows,) or rejected.shape != (rows,):
            return None
        return chosen, rejected

    def store(self, key: str, chosen: torch.Tensor, rejected: torch.Tensor, inputs: dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        tensors = {
            "chosen": chosen.detach().to(torch.float32).contiguous(),
            "rejected": rejected.detach().to(torch.float32).contiguous(),
        }
        save_file(tensors, str(tmp), metadata={"key_inputs": json.dumps(inputs, sort_keys=True, default=str)})
        os.replace(tmp, path)
        return path


def reference_keys(setup: Any, config: Any, *, packed: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """The cache key of each dataset split's reference log-probs: every input that changes them, nothing else.

    ``setup`` is the recipe's ``RunSetup``, ``config`` its DPOConfig.
    """
    import transformers
    import trl

    from .modeling import model_path

    tokenizer, model = setup.tokenizer, setup.model
    model_id = model_identity(model_path(setup.spec.model), getattr(model.config, "_commit_hash", None))
    template = getattr(tokenizer, "chat_template", None)
    tokenization = {
        "trl": trl.__version__,
        "max_length": config.max_length,
        "max_prompt_length": setup.budget.max_prompt_length,
        "truncation_mode": config.truncation_mode,
        "ld_alpha": config.ld_alpha,
        "conversational": setup.train.conversational,
        "chat_template": hashlib.sha256(str(template).encode()).hexdigest() if template else None,
        "special_tokens": [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token],
    }
    precision = setup.precision
    numerics = {
        "device": setup.device,
        "dtype": str(precision.load_dtype),
        "autocast": "bf16" if precision.bf16 else "fp16" if precision.fp16 else None,
        "liger": bool(config.use_liger_kernel),
        "attention": getattr(model.config, "_attn_implementation", None),
        "packed": packed,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    keys = {}
    for name, path in (("train", setup.args.dataset), ("eval", setup.args.eval_dataset)):
        if path is not None:
            keys[name] = reference_key(
                dataset_sha256=file_sha256(path), model=model_id, tokenization=tokenization, numerics=numerics
            )
    return keys
