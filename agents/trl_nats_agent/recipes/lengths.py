"""How long a training sequence may be, and how a preference row that is longer is cut to fit.

Real preference data has prompts that alone fill a short ``max_length``. TRL 1.16 has no prompt budget: it
drops every row whose prompt fills ``max_length``, and a dataset of long prompts trains on nothing. Here,
as older TRL did, a row longer than ``max_length`` keeps the END of its prompt (at most the prompt budget,
where the question usually is) and its completions are cut to the room that is left. A row is dropped only
when it cannot teach anything: a completion with no token, or chosen and rejected identical once cut.
The counts go out as one ``data:`` log event; a dataset with no row left is a :class:`RecipeError` that
names the setting to change.

``max_length`` when the spec leaves it open: the model's context length (its position table, capped by the
tokenizer's limit), or :data:`UNKNOWN_CONTEXT` when the model does not say. Sequences are only as long as
the data: a short dataset never pays for a long context. The prompt budget when the spec leaves it open:
half of ``max_length``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trl_nats.messages import TrainingParams

from .runtime import RecipeError

UNKNOWN_CONTEXT = 2048
FIT_COLUMN = "trl_nats_fit"

# What happened to a row (the FIT_COLUMN values).
WHOLE, PROMPT_CUT, COMPLETION_CUT, BOTH_CUT, EMPTY_COMPLETION, SAME_AFTER_CUT = range(6)
_KEPT = (WHOLE, PROMPT_CUT, COMPLETION_CUT, BOTH_CUT)
_REASONS = {
    EMPTY_COMPLETION: "a completion with no token",
    SAME_AFTER_CUT: "chosen and rejected identical once cut to fit",
}


@dataclass(frozen=True)
class LengthBudget:
    max_length: int  # prompt + completion, tokens, per sequence
    max_prompt_length: int  # what an over-long row keeps of its prompt (its end)
    source: str  # where max_length came from, for the event

    def describe(self) -> str:
        return f"max_length {self.max_length} ({self.source}), prompt budget {self.max_prompt_length}"


def choose_budget(params: TrainingParams, context: int | None) -> LengthBudget:
    if params.max_length is not None:
        max_length, source = params.max_length, "set in the job spec"
    elif context is not None:
        max_length, source = context, "the model's context length"
    else:
        max_length, source = UNKNOWN_CONTEXT, "the model does not say its context length"
    prompt = params.max_prompt_length if params.max_prompt_length is not None else max_length // 2
    if prompt >= max_length:
        raise RecipeError(
            f"params.max_prompt_length {prompt} leaves no room for a completion within max_length {max_length}: "
            "lower params.max_prompt_length or raise params.max_length"
        )
    return LengthBudget(max_length, prompt, source)


def fit_row(example: dict[str, Any], max_length: int, max_prompt_length: int) -> dict[str, Any]:
    """One tokenized row (prompt_ids, chosen_ids, rejected_ids) cut to fit, and what was done (FIT_COLUMN)."""
    prompt, chosen, rejected = example["prompt_ids"], example["chosen_ids"], example["rejected_ids"]
    if not chosen or not rejected:
        return {FIT_COLUMN: EMPTY_COMPLETION}
    if len(prompt) + max(len(chosen), len(rejected)) <= max_length:
        return {FIT_COLUMN: WHOLE}
    status = WHOLE
    if len(prompt) > max_prompt_length:
        prompt = prompt[-max_prompt_length:]  # the end of a prompt holds the question being answered
        status = PROMPT_CUT
    room = max_length - len(prompt)
    if max(len(chosen), len(rejected)) > room:
        chosen, rejected = chosen[:room], rejected[:room]
        status = BOTH_CUT if status == PROMPT_CUT else COMPLETION_CUT
    if chosen == rejected:
        return {FIT_COLUMN: SAME_AFTER_CUT}
    return {"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected, FIT_COLUMN: status}


def _is_kept(status: int) -> bool:
    return status in _KEPT


@dataclass(frozen=True)
class FitReport:
    rows: int
    counts: dict[int, int]
    longest: int  # tokens of the longest sequence (prompt + longer completion) before cutting

    @property
    def kept(self) -> int:
        return sum(self.counts.get(s, 0) for s in _KEPT)

    @property
    def truncated(self) -> int:
        return sum(self.counts.get(s, 0) for s in (PROMPT_CUT, COMPLETION_CUT, BOTH_CUT))

    @property
    def dropped(self) -> int:
        return self.rows - self.kept

    def line(self, name: str, budget: LengthBudget) -> str:
        c = self.counts
        dropped = ", ".join(f"{c[s]} {why}" for s, why in _REASONS.items() if c.get(s))
        return (
            f"data: {name}: {self.rows} rows, {self.kept} kept ({c.get(WHOLE, 0)} whole, {self.truncated} truncated: "
            f"{c.get(PROMPT_CUT, 0) + c.get(BOTH_CUT, 0)} prompts cut to their last {budget.max_prompt_length} "
            f"tokens, {c.get(COMPLETION_CUT, 0) + c.get(BOTH_CUT, 0)} with completions cut), {self.dropped} dropped"
            f"{' (' + dropped + ')' if dropped else ''}; longest row {self.longest} tokens; {budget.describe()}"
        )


def fit_dataset(dataset: Any, budget: LengthBudget, name: str, log: Callable[[str], None], **map_kwargs: Any) -> Any:
    """Cut every row of a tokenized preference dataset to fit ``budget``; log the ``data:`` event.

    Raises RecipeError when no row is left: nothing to train on, on any attempt.
    """
    longest = max(
        (
            len(p) + max(len(c), len(r))
            for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True)
        ),
        default=0,
    )
    fitted = dataset.map(
        fit_row,
        fn_kwargs={"max_length": budget.max_length, "max_prompt_length": budget.max_prompt_length},
        **map_kwargs,
    )
    report = FitReport(len(dataset), dict(Counter(fitted[FIT_COLUMN])), longest)
    log(report.line(name, budget))
    if report.kept == 0:
        reasons = "; ".join(f"{report.counts[s]} had {why}" for s, why in _REASONS.items() if report.counts.get(s))
        raise RecipeError(
            f"no row of the {name} dataset is usable ({reasons or 'it is empty'}) with {budget.describe()}: "
            "raise params.max_length or lower params.max_prompt_length, or fix the rows"
        )
    kept = fitted.filter(_is_kept, input_columns=[FIT_COLUMN], **map_kwargs)
    return kept.remove_columns([FIT_COLUMN])


SAMPLE_ROWS = 2000
TEMPLATE_SLACK = 32  # tokens a chat template adds around the messages, roughly


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return value if isinstance(value, str) else ""


def sampled_longest(dataset: Any, tokenizer: Any, seed: int = 0) -> int:
    """About the longest sequence the rows make, in tokens, from up to :data:`SAMPLE_ROWS` rows: what the
    memory estimate plans for (a long context the data never fills costs nothing to plan around)."""
    import random

    indices = list(range(len(dataset)))
    if len(indices) > SAMPLE_ROWS:
        indices = random.Random(seed).sample(indices, SAMPLE_ROWS)
    texts = []
    for row in dataset.select(indices):
        prompt = _text(row.get("prompt"))
        answers = [_text(row.get(f)) for f in ("chosen", "rejected", "completion", "messages", "text")]
        texts.append(prompt + max(answers, key=len))
    if not texts:
        return 0
    return max(len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]) + TEMPLATE_SLACK
