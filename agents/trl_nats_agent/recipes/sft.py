"""SFT recipe: supervised fine-tuning, full or LoRA. Runs on every torchrun rank.

    torchrun --nproc_per_node=N -m trl_nats_agent.recipes.sft \
        --spec spec.json --dataset rows.jsonl [--eval-dataset eval.jsonl] --output OUT [--resume auto]

Rows: ``{"prompt", "completion"}`` (strings, or message lists), where the loss
covers the completion only; or ``{"messages": [...]}``, where it covers the
whole rendered conversation.

With ``params.lora`` the base model is frozen and a LoRA adapter (peft) is
trained; checkpoints hold the adapter, ``OUTPUT_DIR/final_adapter`` the final
adapter, and ``OUTPUT_DIR/final`` the base model with the adapter merged in,
so every consumer loads ``final`` the same way. Several ranks shard with FSDP2
as in the DPO recipe.

The command line, environment, exit codes and output layout are in ``common``.
"""

from __future__ import annotations

import os
import shutil
import sys

from trl import SFTConfig, SFTTrainer

from trl_nats.messages import JobKind, JobSpec

from . import common, performance
from .common import RecipeArgs, RecipeError, RecipeTrainerMixin
from .events import EventEmitter

SFT_LOSS_TYPES = ("nll", "dft", "chunked_nll")
FINAL_ADAPTER_DIR = "final_adapter"


class _SFTTrainer(RecipeTrainerMixin, SFTTrainer):
    """TRL's SFTTrainer with FSDP2 on CPU and plain Adam (see RecipeTrainerMixin)."""


def lora_config(spec: JobSpec):
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
        target_modules=lora.target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )


class SFTRecipe:
    def __init__(self, args: RecipeArgs) -> None:
        self.args = args
        self.events = EventEmitter.from_env(rank=int(os.environ.get("RANK", 0)))
        self.trainer: _SFTTrainer | None = None

    def setup(self) -> None:
        args = self.args
        self.spec = spec = common.load_spec(args.spec, JobKind.sft)
        self.device = common.choose_device()
        common.quiet_progress_bars()
        self.dist = common.init_distributed(self.device)
        params = spec.params
        self.events.log(f"sft job {spec.job_id}: {self.dist.world_size} process(es) on {self.device}")

        train, rows, conversational = common.load_rows(args.dataset, JobKind.sft, args.output, self.dist)
        evaluation = None
        if args.eval_dataset is not None:
            evaluation, _, _ = common.load_rows(args.eval_dataset, JobKind.sft, args.output, self.dist)
        self.events.log(f"loaded {rows} examples ({'conversational' if conversational else 'plain text'})")

        self.events.log(f"loading model {spec.model}")
        self.precision = precision = common.choose_precision(params, self.device, self.events)
        tokenizer = common.load_tokenizer(spec)
        common.check_chat_template(tokenizer, conversational, spec)
        attention = performance.attention_implementation(self.device, precision.bf16 or precision.fp16)
        model = common.load_model(spec, precision, attention)
        peft_config = lora_config(spec) if params.lora is not None else None

        fsdp = common.use_fsdp(params, self.device, self.dist)
        plan = common.plan_performance(
            spec,
            model,
            device=self.device,
            precision=precision,
            dist_info=self.dist,
            fsdp=fsdp,
            rows=rows,
            uses_reference=False,
            trainable=params.lora is None,
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
        config = SFTConfig(
            **config_kwargs,
            loss_type=params.loss_type if params.loss_type in SFT_LOSS_TYPES else "nll",
            trust_remote_code=common.trust_remote_code(spec),
        )
        self.trainer = _SFTTrainer(
            model=model,
            args=config,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            callbacks=[common.EventsCallback(self.events, self.dist)],
            peft_config=peft_config,
            optimizer_name=params.optimizer,
        )
        what = f"LoRA rank {params.lora.rank}" if params.lora else "full fine-tune"
        self.events.log(
            f"model ready ({what}): {'FSDP2 over ' + str(self.dist.world_size) + ' ranks' if fsdp else 'single replica'}, "
            f"save every {config.save_steps} steps"
        )

    def train(self) -> None:
        assert self.trainer is not None
        resume = common.resume_checkpoint(self.args.resume, self.args.output, self.events)
        self.trainer.train(resume_from_checkpoint=resume)

    def save_checkpoint(self) -> None:
        """The final model: OUTPUT_DIR/final (LoRA: merged into the base model), then a final checkpoint event."""
        assert self.trainer is not None
        self.events.log("saving the final model")
        final = common.save_final_model(self.trainer, self.args.output, self.dist)
        if self.spec.params.lora is not None:
            final = self._merge_adapter(final)
        common.report_final(self.trainer, final, self.events)

    def _merge_adapter(self, saved_adapter):
        """Rank 0 reloads the base model, merges the saved adapter into it and writes the result to ``final``."""
        output = self.args.output
        adapter = output / FINAL_ADAPTER_DIR
        if self.dist.is_main:
            from peft import PeftModel

            if adapter.exists():
                shutil.rmtree(adapter)
            saved_adapter.rename(adapter)
            staging = output / ".final.merging"
            if staging.exists():
                shutil.rmtree(staging)
            base = common.load_model(self.spec, self.precision)
            merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
            merged.save_pretrained(staging, safe_serialization=True)
            self.trainer.processing_class.save_pretrained(staging)
            staging.rename(output / common.FINAL_DIR)
        common.barrier()
        return output / common.FINAL_DIR

    def cleanup(self, ok: bool) -> None:
        self.events.close()
        common.teardown_distributed(ok)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(argv, prog="python -m trl_nats_agent.recipes.sft")
    return common.run_recipe(SFTRecipe(args))


if __name__ == "__main__":
    sys.exit(main())
