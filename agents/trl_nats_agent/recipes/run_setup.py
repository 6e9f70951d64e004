"""Everything a recipe knows once it is set up, in one struct, and the steps every recipe takes to get there.

:func:`prepare` runs the shared preamble in order (spec, device, process group, rows, tokenizer, model, the
length budget, FSDP2 and the performance plan) and returns a :class:`RunSetup`; each recipe then builds its
own TRL config and trainer from it. Nothing here is specific to one training method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trl_nats.messages import JobKind, JobSpec

from . import data, lengths, modeling, performance, trainer
from .events import EventEmitter
from .performance import PerformancePlan
from .runtime import DistInfo, Precision, RecipeArgs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class RunSetup:
    args: RecipeArgs
    events: EventEmitter
    spec: JobSpec
    device: str
    dist: DistInfo
    precision: Precision
    train: data.Rows
    evaluation: data.Rows | None
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    budget: lengths.LengthBudget
    data_length: int  # about the longest sequence the rows make (sampled), for the memory estimate
    fsdp: bool
    plan: PerformancePlan = field(init=False)

    @property
    def max_length(self) -> int:
        return self.budget.max_length

    @property
    def planned_length(self) -> int:
        """The sequence length the memory estimate plans for: the budget, or the data's when that is shorter."""
        return min(self.budget.max_length, self.data_length or self.budget.max_length)

    @property
    def trust_remote_code(self) -> bool:
        return modeling.trust_remote_code(self.spec)

    def config_kwargs(self) -> dict[str, Any]:
        return trainer.config_kwargs(self)

    def callbacks(self) -> list[Any]:
        return [trainer.EventsCallback(self.events, self.dist)]

    def layout(self) -> str:
        return f"FSDP2 over {self.dist.world_size} ranks" if self.fsdp else "single replica"


def prepare(args: RecipeArgs, kind: JobKind, events: EventEmitter, *, what: str) -> RunSetup:
    """The shared preamble; ``what`` names a row in the log ("preference pairs", "examples")."""
    from . import runtime

    spec = runtime.load_spec(args.spec, kind)
    device = runtime.choose_device()
    runtime.quiet_libraries()
    dist_info = runtime.init_distributed(device)
    events.log(f"{kind.value} job {spec.job_id}: {dist_info.world_size} process(es) on {device}")

    train = data.load_rows(args.dataset, kind, args.output, dist_info)
    evaluation = None
    if args.eval_dataset is not None:
        evaluation = data.load_rows(args.eval_dataset, kind, args.output, dist_info)
    events.log(f"loaded {train.count} {what} ({'conversational' if train.conversational else 'plain text'})")

    events.log(f"loading model {spec.model}")
    precision = runtime.choose_precision(spec.params, device, events)
    tokenizer = modeling.load_tokenizer(spec)
    modeling.check_chat_template(tokenizer, train.conversational, spec)
    attention = performance.attention_implementation(device, precision.half)
    model = modeling.load_model(spec, precision, attention)
    budget = lengths.choose_budget(spec.params, modeling.context_length(model, tokenizer))
    return RunSetup(
        args=args,
        events=events,
        spec=spec,
        device=device,
        dist=dist_info,
        precision=precision,
        train=train,
        evaluation=evaluation,
        tokenizer=tokenizer,
        model=model,
        budget=budget,
        data_length=lengths.sampled_longest(train.dataset, tokenizer, spec.params.seed),
        fsdp=trainer.use_fsdp(spec.params, device, dist_info),
    )


def plan(setup: RunSetup, *, uses_reference: bool) -> PerformancePlan:
    """Decide and log the performance plan (LoRA, from ``spec.params.lora``, counted in); kept on the setup."""
    setup.plan = trainer.plan_performance(setup, uses_reference=uses_reference)
    return setup.plan
