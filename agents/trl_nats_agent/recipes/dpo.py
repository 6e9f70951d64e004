"""DPO recipe: one job spec in, a preference-tuned model (or LoRA adapter) out. Runs on every torchrun rank.

    torchrun --nproc_per_node=N -m trl_nats_agent.recipes.dpo \
        --spec spec.json --dataset rows.jsonl [--eval-dataset eval.jsonl] --output OUT [--resume auto]

Rows: ``{"prompt", "chosen", "rejected"}`` as strings, or as message lists (the chat template renders them).
Reads top to bottom: setup (the shared preamble in ``run_setup``, then the DPO config and trainer) ->
train -> save_checkpoint -> cleanup.

- Reference: the initial policy. Full fine-tune: TRL loads it again from ``model.config._name_or_path``;
  LoRA (``params.lora``): the base model with the adapter switched off, no second copy. With
  ``precompute_ref`` (see ``performance``) its log-probs are computed once before training and cached
  (``ref_cache``) for retries and for other jobs on the same data and model.
- Long rows are cut to fit the length budget (``lengths``), with a ``data:`` event.
- Padding-free batches where shown correct (``packing``), else length-grouped batches.
- Several ranks shard policy and reference with FSDP2 (``trainer.RecipeTrainerMixin``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer

from trl_nats.messages import JobKind

from . import checkpoints, failures, lengths, modeling, packing, ref_cache, run_setup, runtime
from .events import EventEmitter
from .performance import Choice
from .ref_cache import RefLogpsCache
from .run_setup import RunSetup
from .runtime import RecipeArgs, RecipeError
from .trainer import RecipeTrainerMixin

LENGTH_COLUMN = "trl_nats_length"


@dataclass(frozen=True)
class CachedReference:
    """Where the precomputed reference log-probs of each dataset split live: split name -> (key, key inputs)."""

    cache: RefLogpsCache
    keys: dict[str, tuple[str, dict[str, Any]]]
    log: Callable[[str], None]

    @property
    def model_hash(self) -> str:
        return self.keys["train"][0]


@dataclass(frozen=True)
class Batching:
    """How the trainer forms micro-batches: packed with no padding, or padded and grouped by length."""

    budget: lengths.LengthBudget
    packed: Choice
    log: Callable[[str], None]


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
    """TRL's DPOTrainer with FSDP2 on CPU, plain Adam, cached reference log-probs, the length budget and
    padding-free batches."""

    def __init__(self, *args: Any, reference: CachedReference | None, batching: Batching, **kwargs: Any) -> None:
        self.reference = reference
        self.batching = batching
        with _trl_model_hash(reference.model_hash if reference else None):
            super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """TRL's tokenization without its drop of long prompts, then our budget (``lengths``) and lengths."""
        from trl.trainer.utils import global_then_local_main_first

        saved, args.max_length = args.max_length, None
        try:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        finally:
            args.max_length = saved
        with global_then_local_main_first():
            dataset = lengths.fit_dataset(dataset, self.batching.budget, dataset_name, self.batching.log)
            if not self.batching.packed.on:
                dataset = dataset.map(_row_length)
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if not self.batching.packed.on and LENGTH_COLUMN not in self._signature_columns:
            self._signature_columns.append(LENGTH_COLUMN)

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

        if self.batching.packed.on:
            install_packing(self)  # the precompute runs inside TRL's __init__: pack it the same way as training
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


def _row_length(example: dict[str, Any]) -> dict[str, int]:
    """Tokens a pair puts in a padded micro-batch: the prompt and its longer completion."""
    return {LENGTH_COLUMN: len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"]))}


def install_packing(trainer: _DPOTrainer) -> None:
    """Pack the policy's (and a live reference model's) fused-head calls; see ``packing``."""
    from accelerate.utils import is_peft_model

    model = trainer.model.get_base_model() if is_peft_model(trainer.model) else trainer.model
    packing.install(model)
    if trainer.ref_model is not None:
        packing.install(trainer.accelerator.unwrap_model(trainer.ref_model))


class DPORecipe:
    def __init__(self, args: RecipeArgs) -> None:
        self.args = args
        self.output = args.output
        self.events = EventEmitter.from_env(rank=runtime.rank_from_env())
        self.run: RunSetup | None = None
        self.trainer: _DPOTrainer | None = None

    def batch_size(self) -> int | None:
        return self.run.spec.params.per_device_batch_size if self.run else None

    def setup(self) -> None:
        run = self.run = run_setup.prepare(self.args, JobKind.dpo, self.events, what="preference pairs")
        params = run.spec.params
        lora = params.lora is not None
        plan = run_setup.plan(run, uses_reference=True)
        packed = packing.choose(params.padding_free, run.model)
        self.events.log(f"performance: {packed.line('padding-free batches')}")

        kwargs = run.config_kwargs()
        if not packed.on and params.shuffle:
            kwargs.update(train_sampling_strategy="group_by_length", length_column_name=LENGTH_COLUMN)
        try:
            config = DPOConfig(
                **kwargs,
                beta=params.beta,
                loss_type=[params.loss_type],
                precompute_ref_log_probs=plan.precompute_ref.on,
            )
        except ValueError as exc:
            raise RecipeError(f"the job's hyperparameters are not accepted by TRL: {exc}") from None
        reference = None
        if plan.precompute_ref.on:
            keys = ref_cache.reference_keys(run, config, packed=packed.on)
            reference = CachedReference(RefLogpsCache(ref_cache.cache_root(self.args.output)), keys, self.events.log)
        self.trainer = _DPOTrainer(
            model=run.model,
            ref_model=None,  # full: TRL reloads it from model.config._name_or_path; LoRA: the adapter switched off
            args=config,
            train_dataset=run.train.dataset,
            eval_dataset=run.evaluation.dataset if run.evaluation else None,
            processing_class=run.tokenizer,
            callbacks=run.callbacks(),
            peft_config=modeling.lora_config(run.spec) if lora else None,
            optimizer_name=params.optimizer,
            reference=reference,
            batching=Batching(run.budget, packed, self.events.log),
        )
        if packed.on:
            install_packing(self.trainer)
        what = f"LoRA rank {params.lora.rank}" if params.lora else "full fine-tune"
        self.events.log(f"model ready ({what}): {run.layout()}, save every {config.save_steps} steps")

    def train(self) -> None:
        assert self.trainer is not None
        resume = checkpoints.resume_checkpoint(self.args.resume, self.args.output, self.events)
        self.trainer.train(resume_from_checkpoint=resume)

    def save_checkpoint(self) -> None:
        """OUTPUT_DIR/final (LoRA: the adapter, merged into the base model on request), then a final event."""
        assert self.trainer is not None and self.run is not None
        self.events.log("saving the final model")
        final = checkpoints.save_final_model(self.trainer, self.run)
        lora = self.run.spec.params.lora
        if lora is not None:
            final = checkpoints.keep_adapter_and_merge(self.run, final, self.run.tokenizer, merge=bool(lora.merge))
        checkpoints.report_final(self.trainer, final, self.events)

    def cleanup(self, ok: bool) -> None:
        self.events.close()
        runtime.teardown_distributed(ok)


def main(argv: list[str] | None = None) -> int:
    args = runtime.parse_args(argv, prog="python -m trl_nats_agent.recipes.dpo")
    return failures.run_recipe(DPORecipe(args))


if __name__ == "__main__":
    sys.exit(main())
