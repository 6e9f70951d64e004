"""DPO recipe: one job spec in, a preference-tuned model out. Runs on every torchrun rank.

    torchrun --nproc_per_node=N -m trl_nats_agent.recipes.dpo \
        --spec spec.json --dataset rows.jsonl [--eval-dataset eval.jsonl] --output OUT [--resume auto]

Rows: ``{"prompt", "chosen", "rejected"}`` as strings, or as message lists
(conversational: the tokenizer's chat template renders them).

The policy is loaded here; the reference model is left to TRL, which loads
it again from ``model.config._name_or_path`` (an absolute path for a local
model). With several ranks both are sharded with FSDP2 (see
``common.RecipeTrainerMixin`` for how that works on CPU too).

With ``precompute_ref`` (by default whenever the run uses at least half the
dataset: see ``performance``) the reference log-probabilities are computed
once, before training, by the initial policy itself, and no reference model
is kept; they are cached (``ref_cache``) so that a retried attempt or another
job on the same dataset and model reads them instead. TRL tokenizes the
dataset on rank 0 first (``global_then_local_main_first``) into the Arrow
cache under ``OUTPUT_DIR``, and the other ranks, and later attempts, load it.

The command line, environment, exit codes and output layout are in ``common``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer

from trl_nats.messages import JobKind

from . import common, performance, ref_cache
from .common import RecipeArgs, RecipeTrainerMixin
from .events import EventEmitter
from .ref_cache import RefLogpsCache


@dataclass(frozen=True)
class CachedReference:
    """Where the precomputed reference log-probs of each dataset split live: split name -> (key, key inputs)."""

    cache: RefLogpsCache
    keys: dict[str, tuple[str, dict[str, Any]]]
    log: Callable[[str], None]

    @property
    def model_hash(self) -> str:
        return self.keys["train"][0]


@contextlib.contextmanager
def _trl_model_hash(value: str | None) -> Iterator[None]:
    """TRL keys its own precompute cache on a SHA-256 of every reference weight: seconds for a 1 B model, on
    every attempt. Our cache key already names the model and everything else that matters, so TRL gets it."""
    if value is None:
        yield
        return
    import trl.trainer.dpo_trainer as trl_dpo

    saved = trl_dpo.hash_module
    trl_dpo.hash_module = lambda _module: value
    try:
        yield
    finally:
        trl_dpo.hash_module = saved


class _DPOTrainer(RecipeTrainerMixin, DPOTrainer):
    """TRL's DPOTrainer with FSDP2 on CPU, plain Adam (see RecipeTrainerMixin), and cached reference log-probs."""

    def __init__(self, *args: Any, reference: CachedReference | None = None, **kwargs: Any) -> None:
        self.reference = reference
        with _trl_model_hash(reference.model_hash if reference else None):
            super().__init__(*args, **kwargs)

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        """TRL's precompute, behind the shared cache, and without TRL's own cache file.

        Rank 0 decides hit or miss for every rank: the miss path runs collectives, so ranks must never
        disagree (another job may write the file meanwhile). On a hit rank 0 sends the log-probs to the
        others (two float32 vectors, one number per pair). On a miss every rank gets them from the
        pass's gather. Nothing is read from a file another rank wrote: the ranks of a multi-node job
        have different disks (TRL's own precompute writes its Arrow file on rank 0 and reads it on all).
        """
        from accelerate.utils import broadcast_object_list
        from datasets import Dataset, concatenate_datasets

        entry = self.reference.keys.get(name) if self.reference else None
        loaded = None
        if entry is not None:
            key, inputs = entry
            cache = self.reference.cache
            shared = [cache.load(key, len(dataset)) if self.accelerator.is_main_process else None]
            broadcast_object_list(shared, from_process=0)
            loaded = shared[0]
        start = time.monotonic()
        if loaded is not None:
            chosen, rejected = loaded
            self.reference.log(f"reference log-probs for {name}: {len(dataset)} pairs read from {cache.path(key)}")
        else:
            chosen, rejected = self._reference_pass(dataset, batch_size)
            if entry is not None:  # None: a dataset handed to evaluate() later, not worth a cache entry
                if self.accelerator.is_main_process:
                    cache.store(key, chosen, rejected, inputs)
                self.accelerator.wait_for_everyone()
                self.reference.log(
                    f"reference log-probs for {name}: {len(dataset)} pairs computed in "
                    f"{time.monotonic() - start:.1f} s, cached at {cache.path(key)}"
                )
        # Both paths build the columns the same way, from float32, so a cached run trains on identical inputs.
        columns = Dataset.from_dict({"ref_chosen_logps": chosen.numpy(), "ref_rejected_logps": rejected.numpy()})
        return concatenate_datasets([dataset, columns], axis=1)

    def _reference_pass(self, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference log-probs of every pair, in dataset order, on every rank: TRL's precompute loop."""
        from torch.utils.data import DataLoader

        loader = self.accelerator.prepare(
            DataLoader(
                dataset,
                batch_size=batch_size,
                collate_fn=self.data_collator,
                num_workers=self.args.dataloader_num_workers,
                pin_memory=self.args.dataloader_pin_memory,
                shuffle=False,
            )
        )
        model = self.ref_model or self.model
        chosen, rejected = [], []
        for batch in loader:
            c, r = self.accelerator.gather_for_metrics(self.compute_ref_log_probs(model, batch))
            chosen.append(c.cpu())
            rejected.append(r.cpu())
        return torch.cat(chosen).float(), torch.cat(rejected).float()


class DPORecipe:
    def __init__(self, args: RecipeArgs) -> None:
        self.args = args
        self.events = EventEmitter.from_env(rank=int(os.environ.get("RANK", 0)))
        self.trainer: _DPOTrainer | None = None

    def setup(self) -> None:
        args = self.args
        self.spec = spec = common.load_spec(args.spec, JobKind.dpo)
        self.device = common.choose_device()
        common.quiet_progress_bars()
        self.dist = common.init_distributed(self.device)
        params = spec.params
        self.events.log(f"dpo job {spec.job_id}: {self.dist.world_size} process(es) on {self.device}")

        train, rows, conversational = common.load_rows(args.dataset, JobKind.dpo, args.output, self.dist)
        evaluation = None
        if args.eval_dataset is not None:
            evaluation, _, _ = common.load_rows(args.eval_dataset, JobKind.dpo, args.output, self.dist)
        self.events.log(f"loaded {rows} preference pairs ({'conversational' if conversational else 'plain text'})")

        self.events.log(f"loading model {spec.model}")
        precision = common.choose_precision(params, self.device, self.events)
        tokenizer = common.load_tokenizer(spec)
        common.check_chat_template(tokenizer, conversational, spec)
        attention = performance.attention_implementation(self.device, precision.bf16 or precision.fp16)
        model = common.load_model(spec, precision, attention)

        fsdp = common.use_fsdp(params, self.device, self.dist)
        plan = common.plan_performance(
            spec,
            model,
            device=self.device,
            precision=precision,
            dist_info=self.dist,
            fsdp=fsdp,
            rows=rows,
            uses_reference=True,
            trainable=True,
            events=self.events,
        )
        config_kwargs = common.base_config_kwargs(
            spec,
            output_dir=args.output,
            device=self.device,
            precision=precision,
            fsdp=fsdp,
            rows=rows,
            world_size=self.dist.world_size,
            has_eval=evaluation is not None,
            plan=plan,
            events=self.events,
        )
        config = DPOConfig(
            **config_kwargs,
            beta=params.beta,
            loss_type=[params.loss_type],
            precompute_ref_log_probs=plan.precompute_ref.on,
            trust_remote_code=common.trust_remote_code(spec),
        )
        reference = None
        if plan.precompute_ref.on:
            reference = self._cached_reference(config, tokenizer, model, precision, conversational)
        self.trainer = _DPOTrainer(
            model=model,
            ref_model=None,  # TRL reloads the reference from model.config._name_or_path
            args=config,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            callbacks=[common.EventsCallback(self.events, self.dist)],
            optimizer_name=params.optimizer,
            reference=reference,
        )
        self.events.log(
            f"model ready: {'FSDP2 over ' + str(self.dist.world_size) + ' ranks' if fsdp else 'single replica'}, "
            f"save every {config.save_steps} steps"
        )

    def _cached_reference(
        self, config: DPOConfig, tokenizer, model, precision: common.Precision, conversational: bool
    ) -> CachedReference:
        """The cache keys of the reference log-probs: every input that changes them, and nothing else."""
        import transformers
        import trl

        model_id = ref_cache.model_identity(
            common.model_path(self.spec.model), getattr(model.config, "_commit_hash", None)
        )
        template = getattr(tokenizer, "chat_template", None)
        tokenization = {
            "trl": trl.__version__,
            "max_length": config.max_length,
            "truncation_mode": config.truncation_mode,
            "ld_alpha": config.ld_alpha,
            "conversational": conversational,
            "chat_template": hashlib.sha256(str(template).encode()).hexdigest() if template else None,
            "special_tokens": [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token],
        }
        numerics = {
            "device": self.device,
            "dtype": str(precision.load_dtype),
            "autocast": "bf16" if precision.bf16 else "fp16" if precision.fp16 else None,
            "liger": bool(config.use_liger_kernel),
            "attention": getattr(model.config, "_attn_implementation", None),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        keys = {}
        for name, path in (("train", self.args.dataset), ("eval", self.args.eval_dataset)):
            if path is not None:
                keys[name] = ref_cache.reference_key(
                    dataset_sha256=ref_cache.file_sha256(path),
                    model=model_id,
                    tokenization=tokenization,
                    numerics=numerics,
                )
        return CachedReference(RefLogpsCache(ref_cache.cache_root(self.args.output)), keys, self.events.log)

    def train(self) -> None:
        assert self.trainer is not None
        resume = common.resume_checkpoint(self.args.resume, self.args.output, self.events)
        self.trainer.train(resume_from_checkpoint=resume)

    def save_checkpoint(self) -> None:
        """The final model: OUTPUT_DIR/final, then a final checkpoint event."""
        assert self.trainer is not None
        self.events.log("saving the final model")
        final = common.save_final_model(self.trainer, self.args.output, self.dist)
        common.report_final(self.trainer, final, self.events)

    def cleanup(self, ok: bool) -> None:
        self.events.close()
        common.teardown_distributed(ok)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(argv, prog="python -m trl_nats_agent.recipes.dpo")
    return common.run_recipe(DPORecipe(args))


if __name__ == "__main__":
    sys.exit(main())
