"""Row checks for Llama Stack datasets: every row is checked before a job is queued.

A bad row found on an agent minutes later is a failed job; found here it is
an HTTP 400 naming the dataset, the first bad row and its field. The row
schema itself is :mod:`trl_nats.rows` (the one the CLI and the recipes use);
what lives here is only what is Llama Stack's:

- rows are numbered as Llama Stack indexes them (from 0) and errors name the dataset id;
- Llama Stack's own supervised forms become canonical rows first:
  ``input_query`` + ``expected_answer``; ``chat_completion_input`` (messages,
  or their JSON) + ``expected_answer``; ``dialog`` (messages, or their JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from trl_nats.messages import JobKind
from trl_nats.rows import RowError, check_rows, read_jsonl
from trl_nats_provider.errors import InvalidTrainingRequest

LLAMA_STACK_SFT_HINT = (
    "supervised rows need 'prompt' and 'completion', or 'messages', or 'text' "
    "(or Llama Stack's 'input_query'/'chat_completion_input' with 'expected_answer', or 'dialog')"
)


def _present(row: Mapping[str, Any], field: str) -> bool:
    value = row.get(field)
    # pandas (behind Llama Stack's datasetio) fills a column a row lacks with NaN
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _loads(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise RowError(f"field {field!r} is a string but not JSON of a message list", field=field) from None
    return value


def _answer(row: Mapping[str, Any]) -> str:
    answer = row.get("expected_answer")
    if not _present(row, "expected_answer"):
        raise RowError(f"field 'expected_answer' is missing; {LLAMA_STACK_SFT_HINT}", field="expected_answer")
    if not isinstance(answer, str):
        raise RowError("field 'expected_answer' must be a string", field="expected_answer")
    return answer


def _from_llama_stack(row: Any) -> Any:
    """A Llama Stack supervised row as a trl_nats row; any other row unchanged (the schema checks it)."""
    if not isinstance(row, Mapping) or any(_present(row, f) for f in ("messages", "prompt", "completion", "text")):
        return row
    if _present(row, "dialog"):
        return {"messages": _loads(row["dialog"], "dialog")}
    if _present(row, "chat_completion_input"):
        prompt = _loads(row["chat_completion_input"], "chat_completion_input")
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": _answer(row)}]}
    if _present(row, "input_query"):
        query = row["input_query"]
        if not isinstance(query, str):
            raise RowError("'input_query' and 'expected_answer' must be strings", field="input_query")
        return {"prompt": query, "completion": _answer(row)}
    raise RowError(f"has fields {sorted(map(str, row))} and none of the supervised forms; {LLAMA_STACK_SFT_HINT}")


def _converted(rows: Iterable[Any]) -> Iterator[Any]:
    for index, row in enumerate(rows):
        try:
            yield _from_llama_stack(row)
        except RowError as exc:
            raise RowError(exc.reason, line=index, field=exc.field) from None


def _check(rows: Iterable[Mapping[str, Any]], dataset_id: str, kind: JobKind) -> list[dict[str, Any]]:
    rows = list(rows)
    if not rows:
        raise InvalidTrainingRequest(f"dataset {dataset_id!r} has no rows: append rows or register another dataset")
    try:
        return check_rows(_converted(rows) if kind is JobKind.sft else rows, kind, first=0).rows
    except RowError as exc:
        raise InvalidTrainingRequest(f"dataset {dataset_id!r}, {exc}") from None


def preference_rows(rows: Iterable[Mapping[str, Any]], dataset_id: str) -> list[dict[str, Any]]:
    """Checked preference rows {prompt, chosen, rejected}; raise on the first bad one."""
    return _check(rows, dataset_id, JobKind.dpo)


def sft_rows(rows: Iterable[Mapping[str, Any]], dataset_id: str) -> list[dict[str, Any]]:
    """Checked supervised rows in TRL's shape ({prompt, completion}, {messages} or {text})."""
    return _check(rows, dataset_id, JobKind.sft)


def file_rows(data: bytes | str, file_id: str, kind: JobKind) -> list[dict[str, Any]]:
    """Checked rows of a file uploaded to the stack's Files API: JSON lines in trl_nats's row formats.

    Rows are numbered by their line in the file (:func:`trl_nats.rows.read_jsonl`).
    """
    try:
        return read_jsonl(data, kind).rows
    except RowError as exc:
        raise InvalidTrainingRequest(f"file {file_id!r} (JSON lines), {exc}") from None
