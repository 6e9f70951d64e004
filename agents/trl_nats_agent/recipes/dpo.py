"""DPO recipe: one job spec in, a preference-tuned model out. Runs on every torchrun rank.

    torchrun --nproc_per_node=N -m trl_nats_agent.recipes.dpo \
        --spec spec.json --dataset rows.jsonl [--eval-dataset eval.jsonl] --output OUT [--resume auto]

Rows: ``{"prompt", "chosen", "rejected"}`` as strings, or as message lists
(conversational: the tokenizer's chat template renders them).

The policy is loaded here; the reference model is left to TRL, which loads
it again from ``model.config._name_or_path`` (an absolute path for a local
model). With several ranks both are sharded with FSDP2 (see
``common.RecipeTrainerMixin`` for how that works on CPU too). With
``precompute_ref`` the reference log-probabilities are computed once before
training and the reference model is freed.

The command line, environment, exit codes and output layout are in ``common``.
"""

from __future__ import annotations

import os
import sys

from trl import DPOConfig, DPOTrainer

from trl_nats.messages import JobKind

from . import common
from .common import RecipeArgs, RecipeTrainerMixin
from .events import EventEmitter


class _DPOTrainer(RecipeTrainerMixin, DPOTrainer):
    """TRL's DPOTrainer with FSDP2 on CPU and plain Adam (see RecipeTrainerMixin)."""


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
        model = common.load_model(spec, precision)

        fsdp = common.use_fsdp(params, self.device, self.dist)
        config_kwargs = common.base_config_kwargs(
            spec,
            output_dir=args.output,
            device=self.device,
            precision=precision,
            fsdp=fsdp,
            rows=rows,
            world_size=self.dist.world_size,
            has_eval=evaluation is not None,
            events=self.events,
        )
        precompute_ref = bool(params.precompute_ref)  # None: off until measured to pay for itself on GPUs
        config = DPOConfig(
            **config_kwargs,
            beta=params.beta,
            loss_type=[params.loss_type],
            precompute_ref_log_probs=precompute_ref,
            trust_remote_code=spec.trust_remote_code,
        )
        self.trainer = _DPOTrainer(
            model=model,
            ref_model=None,  # TRL reloads the reference from model.config._name_or_path
            args=config,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            callbacks=[common.EventsCallback(self.events, self.dist)],
            optimizer_name=params.optimizer,
        )
        self.events.log(
            f"model ready: {'FSDP2 over ' + str(self.dist.world_size) + ' ranks' if fsdp else 'single replica'}, "
            f"save every {config.save_steps} steps"
        )

    def train(self) -> None:
        assert self.trainer is not None
        resume = common.resume_checkpoint(self.args.resume, self.args.output, self.events)
        self.trainer.train(resume_from_checkpoint=resume)

    def save_checkpoint(self) -> None:
        """The final model: OUTPUT_DIR/final, then a final checkpoint event."""
        assert self.trainer is not None
        self.events.log("saving the final model")
        final = common.save_final_model(self.trainer, self.args.output, self.dist)
        state = self.trainer.state
        metrics = {k: v for k, v in (state.log_history[-1] if state.log_history else {}).items() if k != "epoch"}
        self.events.checkpoint(state.global_step, state.epoch or 0.0, str(final), metrics, final=True)
        self.events.log(f"done: {state.global_step} steps, final model in {final}")

    def cleanup(self, ok: bool) -> None:
        self.events.close()
        common.teardown_distributed(ok)


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(argv, prog="python -m trl_nats_agent.recipes.dpo")
    return common.run_recipe(DPORecipe(args))


if __name__ == "__main__":
    sys.exit(main())
