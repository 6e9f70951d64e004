"""The length budget (``recipes/lengths.py``): pure functions, no process.

The recipe-level twin (a real DPO job with prompts longer than max_length, and one with no usable row) is in
``tests/test_recipe_dpo_features.py``.
"""

from __future__ import annotations

import pytest
from trl_nats_agent.recipes.lengths import (
    BOTH_CUT,
    COMPLETION_CUT,
    EMPTY_COMPLETION,
    PROMPT_CUT,
    SAME_AFTER_CUT,
    UNKNOWN_CONTEXT,
    WHOLE,
    FitReport,
    LengthBudget,
    choose_budget,
    fit_row,
)
from trl_nats_agent.recipes.runtime import RecipeError

from trl_nats.messages import TrainingParams


def test_max_length_follows_the_spec_then_the_model_context():
    assert choose_budget(TrainingParams(max_length=256), 4096) == LengthBudget(256, 128, "set in the job spec")
    assert choose_budget(TrainingParams(), 4096) == LengthBudget(4096, 2048, "the model's context length")
    unknown = choose_budget(TrainingParams(max_prompt_length=100), None)
    assert (unknown.max_length, unknown.max_prompt_length) == (UNKNOWN_CONTEXT, 100)
    with pytest.raises(RecipeError, match="lower params.max_prompt_length or raise params.max_length"):
        choose_budget(TrainingParams(max_prompt_length=600), 512)


def _row(p: int, c: int, r: int) -> dict:
    return {"prompt_ids": list(range(p)), "chosen_ids": [1] * c, "rejected_ids": [2] * r}


def test_a_row_that_fits_is_kept_whole():
    assert fit_row(_row(10, 5, 6), 32, 16) == {"trl_nats_fit": WHOLE}


def test_an_over_long_prompt_keeps_its_end_and_completions_get_the_room_left():
    out = fit_row(_row(100, 20, 40), 64, 32)
    assert out["trl_nats_fit"] == BOTH_CUT
    assert out["prompt_ids"] == list(range(68, 100))  # the last 32 tokens
    assert (len(out["chosen_ids"]), len(out["rejected_ids"])) == (20, 32)  # 64 - 32 left for each
    prompt_only = fit_row(_row(100, 10, 10), 64, 32)
    assert prompt_only["trl_nats_fit"] == PROMPT_CUT and len(prompt_only["prompt_ids"]) == 32
    completion = fit_row(_row(20, 100, 5), 64, 32)
    assert completion["trl_nats_fit"] == COMPLETION_CUT and len(completion["chosen_ids"]) == 44


def test_rows_that_cannot_teach_are_dropped_with_their_reason():
    assert fit_row(_row(10, 0, 4), 64, 32) == {"trl_nats_fit": EMPTY_COMPLETION}
    same = {"prompt_ids": [9] * 40, "chosen_ids": [1] * 40 + [2], "rejected_ids": [1] * 40 + [3]}
    assert fit_row(same, 64, 32) == {"trl_nats_fit": SAME_AFTER_CUT}


def test_the_data_event_counts_kept_truncated_and_dropped():
    report = FitReport(rows=10, counts={WHOLE: 5, PROMPT_CUT: 2, BOTH_CUT: 1, SAME_AFTER_CUT: 2}, longest=900)
    assert (report.kept, report.truncated, report.dropped) == (8, 3, 2)
    line = report.line("train", LengthBudget(512, 256, "set in the job spec"))
    assert line.startswith("data: train: 10 rows, 8 kept (5 whole, 3 truncated: 3 prompts cut to their last 256")
    assert "2 dropped (2 chosen and rejected identical once cut to fit)" in line and "longest row 900" in line
