"""One row schema: the CLI, the provider and the recipes accept and reject exactly the same rows.

The same table of datasets goes through each consumer's own entry point (the CLI's file reader,
the provider's Llama Stack row checks, the recipe's dataset validator) and through
``trl_nats.rows`` itself; every one must agree on accept/reject, name the same field for a bad
row, and the ones that return rows must return the same canonical rows.
(Llama Stack's own supervised forms, ``input_query`` and friends, are the provider's input
format only: they are tested in ``test_provider_unit.py``.)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pytest

from trl_nats.messages import JobKind
from trl_nats.rows import RowError, check_row, check_rows, read_jsonl

DPO, SFT = JobKind.dpo, JobKind.sft
U = {"role": "user", "content": "Hi"}
A = {"role": "assistant", "content": "Hello!"}
B = {"role": "assistant", "content": "Go away."}
PREF = {"prompt": "p", "chosen": "c", "rejected": "r"}
CONV_PREF = {"prompt": [U], "chosen": [A], "rejected": [B]}

# accepted: (name, kind, rows, canonical rows: None when they are the rows as given)
GOOD = [
    ("dpo strings", DPO, [PREF, {"prompt": "", "chosen": "c2", "rejected": "r2"}], None),
    ("dpo messages", DPO, [CONV_PREF], None),
    ("dpo extra fields dropped", DPO, [{**PREF, "id": 7}], [PREF]),
    ("dpo message extras dropped", DPO, [{**CONV_PREF, "chosen": [{**A, "name": "x"}]}], [CONV_PREF]),
    (
        "openai preference line",
        DPO,
        [{"input": {"messages": [U]}, "preferred_output": [A], "non_preferred_output": [B]}],
        [CONV_PREF],
    ),
    ("sft prompt completion", SFT, [{"prompt": "a", "completion": "b"}], None),
    ("sft conversational prompt completion", SFT, [{"prompt": [U], "completion": [A]}], None),
    ("sft messages", SFT, [{"messages": [U, A]}], None),
    ("openai chat line", SFT, [{"messages": [U, {**A, "weight": 1}]}], [{"messages": [U, A]}]),
    ("sft text", SFT, [{"text": "Once upon a time"}, {"text": "The end."}], None),
]
# rejected: (name, kind, rows, index of the first bad row, the field the error names or None)
BAD = [
    ("dpo missing chosen", DPO, [PREF, {"prompt": "p", "rejected": "r"}], 1, "chosen"),
    ("dpo empty chosen", DPO, [{**PREF, "chosen": "  "}], 0, "chosen"),
    ("dpo chosen not text", DPO, [{**PREF, "chosen": 3}], 0, "chosen"),
    ("dpo chosen null", DPO, [{**PREF, "chosen": None}], 0, "chosen"),
    ("dpo one row mixes forms", DPO, [{**PREF, "chosen": [A]}], 0, None),
    ("dpo bad role", DPO, [{**CONV_PREF, "chosen": [{"role": "bot", "content": "c"}]}], 0, "chosen"),
    ("dpo content not text", DPO, [{**CONV_PREF, "rejected": [{"role": "assistant", "content": 1}]}], 0, "rejected"),
    ("dpo empty message list", DPO, [{**CONV_PREF, "chosen": []}], 0, "chosen"),
    ("dpo chosen without assistant", DPO, [{**CONV_PREF, "chosen": [U]}], 0, "chosen"),
    ("dpo rows mix strings and messages", DPO, [PREF, CONV_PREF], 1, None),
    (
        "openai line without non_preferred_output",
        DPO,
        [{"input": {"messages": [U]}, "preferred_output": [A]}],
        0,
        "non_preferred_output",
    ),
    ("dpo row not an object", DPO, [PREF, ["p", "c", "r"]], 1, None),
    ("sft completion missing", SFT, [{"prompt": "a", "completion": "b"}, {"prompt": "c"}], 1, "completion"),
    ("sft messages without assistant", SFT, [{"messages": [U]}], 0, "messages"),
    ("sft empty text", SFT, [{"text": " "}], 0, "text"),
    ("sft text not a string", SFT, [{"text": 5}], 0, "text"),
    ("sft no known fields", SFT, [{"question": "a"}], 0, None),
    ("sft prompt text completion messages", SFT, [{"prompt": "a", "completion": [A]}], 0, None),
    ("sft rows mix text and prompt completion", SFT, [{"text": "t"}, {"prompt": "a", "completion": "b"}], 1, None),
    ("sft rows mix messages and strings", SFT, [{"prompt": "a", "completion": "b"}, {"messages": [U, A]}], 1, None),
]


def _write(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- the consumers, each through its own entry point --------------------------------------


def core(tmp_path: Path, kind: JobKind, rows: list) -> list[dict]:
    return check_rows(rows, kind).rows


def cli(tmp_path: Path, kind: JobKind, rows: list) -> list[dict]:
    from trl_nats.cli import read_dataset

    return read_dataset(str(_write(tmp_path, rows)), kind).rows


def provider(tmp_path: Path, kind: JobKind, rows: list) -> list[dict]:
    pytest.importorskip("llama_stack_api")
    from trl_nats_provider import rows as provider_rows

    check = provider_rows.preference_rows if kind is DPO else provider_rows.sft_rows
    return check(rows, "ds")


RECIPE_VALIDATORS = ("trl_nats_agent.recipes.data", "trl_nats_agent.recipes.common")


def _recipe_validator():
    """The recipes' own dataset check (``validate_rows(path, kind)``), wherever the recipes keep it."""
    if importlib.util.find_spec("trl_nats_agent") is None:
        pytest.skip("the agent (and its recipes) is not installed here")
    for module in RECIPE_VALIDATORS:
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        if hasattr(found, "validate_rows"):
            return found.validate_rows
    pytest.fail(f"no validate_rows in {', '.join(RECIPE_VALIDATORS)}: point RECIPE_VALIDATORS at the recipes' check")


def recipe(tmp_path: Path, kind: JobKind, rows: list) -> None:
    _recipe_validator()(_write(tmp_path, rows), kind)
    return None  # the recipe trains from its file: it returns a count, not rows


CONSUMERS = {"core": core, "cli": cli, "provider": provider, "recipe": recipe}
ERRORS = ("RowError", "CliError", "InvalidTrainingRequest", "RecipeError")


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
@pytest.mark.parametrize(("name", "kind", "rows", "canonical"), GOOD, ids=[c[0] for c in GOOD])
def test_every_consumer_accepts_the_same_rows(consumer, name, kind, rows, canonical, tmp_path: Path):
    got = CONSUMERS[consumer](tmp_path, kind, rows)
    if got is not None:
        assert got == (rows if canonical is None else canonical), f"{consumer}: {name}"


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
@pytest.mark.parametrize(("name", "kind", "rows", "bad", "field"), BAD, ids=[c[0] for c in BAD])
def test_every_consumer_rejects_the_same_rows(consumer, name, kind, rows, bad, field, tmp_path: Path):
    with pytest.raises(Exception) as exc:  # noqa: B017 - each consumer answers with its own error type
        CONSUMERS[consumer](tmp_path, kind, rows)
    assert type(exc.value).__name__ in ERRORS, f"{consumer}: {name}: {exc.value!r}"
    message = str(exc.value)
    number = bad if consumer == "provider" else bad + 1  # Llama Stack indexes rows from 0
    assert f"row {number}" in message, f"{consumer}: {name}: {message}"
    if field:
        assert f"{field}'" in message, f"{consumer}: {name}: {message}"


# -- the schema's own interface ------------------------------------------------------------


def test_row_error_carries_line_and_field():
    with pytest.raises(RowError) as exc:
        check_rows([PREF, PREF, {"prompt": "p", "chosen": "c"}], DPO)
    assert (exc.value.line, exc.value.field) == (3, "rejected")
    assert str(exc.value).startswith("row 3: field 'rejected' is missing; preference rows need")


def test_check_row_returns_the_canonical_row_and_numbers_its_error():
    assert check_row({**PREF, "extra": 1}, DPO) == PREF
    with pytest.raises(RowError, match=r"^row 9: field 'completion' is missing") as exc:
        check_row({"prompt": "a"}, SFT, line=9)
    assert exc.value.field == "completion"


def test_rows_check_reports_count_format_and_conversational():
    got = check_rows([CONV_PREF, CONV_PREF], DPO)
    assert (got.count, got.format, got.conversational) == (2, "prompt/chosen/rejected", True)
    got = check_rows([{"text": "a"}], SFT)
    assert (got.count, got.format, got.conversational) == (1, "text", False)


def test_read_jsonl_names_the_line_of_the_file():
    data = json.dumps(PREF) + "\n\n" + "{not json\n"
    with pytest.raises(RowError, match=r"^row 3: not valid JSON") as exc:
        read_jsonl(data, DPO)
    assert exc.value.line == 3
    with pytest.raises(RowError, match=r"^row 3: field 'chosen'"):
        read_jsonl(data.replace("{not json", json.dumps({"prompt": "p", "rejected": "r"})), DPO)
    assert read_jsonl(data.encode().replace(b"{not json", json.dumps(PREF).encode()), DPO).count == 2


def test_an_empty_dataset_is_rejected():
    with pytest.raises(RowError, match="has no rows") as exc:
        read_jsonl("\n\n", SFT)
    assert exc.value.line is None
    with pytest.raises(RowError, match="has no rows"):
        check_rows([], DPO)


def test_the_shipped_datasets_pass():
    data = Path(__file__).resolve().parents[2] / "trl_nats" / "data"
    assert read_jsonl((data / "preferences.jsonl").read_bytes(), DPO).format == "prompt/chosen/rejected"
    assert read_jsonl((data / "sft.jsonl").read_bytes(), SFT).format == "prompt/completion"
