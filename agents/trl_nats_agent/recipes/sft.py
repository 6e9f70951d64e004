"""SFT recipe: supervised fine-tuning, full or LoRA. Runs on every torchrun rank.

    torchrun --nproc_per_node=N -m trl_nats_agent.recipes.sft \
        --spec spec.json --dataset rows.jsonl [--eval-dataset eval.jsonl] --output OUT [--resume auto]

Rows: ``{"prompt", "completion"}`` (strings, or message lists), where the loss
covers the completion only; ``{"messages": [...]}``, where it covers the
whole rendered conversation; or ``{"text"}``, plain language modelling.
Reads top to bottom: setup (the shared preamble in ``run_setup``) -> train ->
save_checkpoint -> cleanup.

With ``params.lora`` the base model is frozen and a LoRA adapter (peft) is
trained; checkpoints hold the adapter, ``OUTPUT_DIR/final_adapter`` the final
adapter, and ``OUTPUT_DIR/final`` the base model with the adapter merged in,
so every consumer loads ``final`` the same way. Several ranks shard with FSDP2
as in the DPO recipe.

The agent/recipe contract (arguments, environment, files, exit codes) is in ``contract``.
"""

from __future__ import annotations

import sys

from trl import SFTConfig, SFTTrainer

from trl_nats.messages import JobKind

from . import checkpoints, failures, modeling, run_setup, runtime
from .events import EventEmitter
from .run_setup import RunSetup
from .runtime import RecipeArgs, RecipeError
from .trainer import RecipeTrainerMixin

SFT_LOSS_TYPES = ("nll", "dft", "chunked_nll")


class _SFTTrainer(RecipeTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer with FSDP2 on CPU and plain Adam (see RecipeTrainerMixin)."""


class SFTRecipe:
    def __init__(self, args: RecipeArgs) -> None:
        self.args = args
        self.output = args.output
        self.events = EventEmitter.from_env(rank=runtime.rank_from_env())
        self.run: RunSetup | None = None
        self.trainer: _SFTTrainer | None = None

    def batch_size(self) -> int | None:
        return self.run.spec.params.per_device_batch_size if self.run else None

    def setup(self) -> None:
        run = self.run = run_setup.prepare(self.args, JobKind.sft, self.events, what="examples")
        params = run.spec.params
        run_setup.plan(run, uses_reference=False)
        self.events.log(f"data: sequences up to {run.budget.describe()}")
        try:
            config = SFTConfig(
                **run.config_kwargs(), loss_type=params.loss_type if params.loss_type in SFT_LOSS_TYPES else "nll"
            )
        except ValueError as exc:
            raise RecipeError(f"the job's hyperparameters are not accepted by TRL: {exc}") from None
        self.trainer = _SFTTrainer(
            model=run.model,
            args=config,
            train_dataset=run.train.dataset,
            eval_dataset=run.evaluation.dataset if run.evaluation else None,
            processing_class=run.tokenizer,
            callbacks=run.callbacks(),
            peft_config=modeling.lora_config(run.spec) if params.lora is not None else None,
            optimizer_name=params.optimizer,
        )
        what = f"LoRA rank {params.lora.rank}" if params.lora else "full fine-tune"
        self.events.log(f"model ready ({what}): {run.layout()}, save every {config.save_steps} steps")

    def train(self) -> None:
        assert self.trainer is not None
        resume = checkpoints.resume_checkpoint(self.args.resume, self.args.output, self.events)
        self.trainer.train(resume_from_checkpoint=resume)

    def save_checkpoint(self) -> None:
        """OUTPUT_DIR/final (LoRA: merged into the base model unless the spec says otherwise), then a final event."""
        assert self.trainer is not None and self.run is not None
        self.events.log("saving the final model")
        final = checkpoints.save_final_model(self.trainer, self.run)
        lora = self.run.spec.params.lora
        if lora is not None:
            merge = lora.merge is not False
            final = checkpoints.keep_adapter_and_merge(self.run, final, self.run.tokenizer, merge=merge)
        checkpoints.report_final(self.trainer, final, self.events)

    def cleanup(self, ok: bool) -> None:
        self.events.close()
        runtime.teardown_distributed(ok)


def main(argv: list[str] | None = None) -> int:
    args = runtime.parse_args(argv, prog="python -m trl_nats_agent.recipes.sft")
    return failures.run_recipe(SFTRecipe(args))


if __name__ == "__main__":
    sys.exit(main())
