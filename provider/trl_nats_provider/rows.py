"""Row checks: every row of a dataset is checked here before a job is queued.

A bad row found on an agent minutes later is a failed job; found here it is
an HTTP 400 naming the dataset, the first bad row and its field. Rows come
back in the shape TRL's trainers read, with only the fields they use, so
equal data always has the same content address.

Preference (DPO) rows: ``prompt``, ``chosen`` and ``rejected``, each a
string, or each a list of ``{role, content}`` messages (only ``prompt``
may be an empty string).

Supervised (SFT) rows, one form per dataset:
- ``prompt`` + ``completion`` (strings, or message lists);
- ``messages`` (a conversation with at least one assistant message);
- Llama Stack's own forms: ``input_query`` + ``expected_answer``;
  ``chat_completion_input`` (messages, or their JSON) + ``expected_answer``;
  ``dialog`` (messages, or their JSON).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from trl_nats_provider.errors import InvalidTrainingRequest

ROLES = ("system", "user", "assistant", "tool")
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")

_PREFERENCE_HINT = (
    "preference rows need 'prompt', 'chosen' and 'rejected', each a string or each a list of {role, content} messages"
)
_SFT_HINT = (
    "supervised rows need 'prompt' and 'completion', or 'messages' "
    "(or Llama Stack's 'input_query'/'chat_completion_input' with 'expected_answer', or 'dialog')"
)


def _missing(value: Any) -> bool:
    # pandas (behind datasetio localfs) fills a column a row lacks with NaN
    return value is None or (isinstance(value, float) and math.isnan(value))


def _where(dataset_id: str, index: int) -> str:
    return f"dataset {dataset_id!r}, row {index}"


def _messages(value: Any, where: str, field: str, hint: str) -> list[dict[str, str]]:
    """Check a message list; returns plain dicts {role, content}."""
    if not isinstance(value, list | tuple) or not value:
        raise InvalidTrainingRequest(f"{where}: field {field!r} must be a non-empty list of messages; {hint}")
    out = []
    for n, msg in enumerate(value):
        if not isinstance(msg, Mapping):
            raise InvalidTrainingRequest(
                f"{where}: field {field!r} message {n} is {type(msg).__name__}, not an object with role and content"
            )
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise InvalidTrainingRequest(
                f"{where}: field {field!r} message {n} has role {role!r}; use one of {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise InvalidTrainingRequest(
                f"{where}: field {field!r} message {n} content must be a string, not {type(content).__name__}"
            )
        out.append({"role": role, "content": content})
    return out


def _value(row: Mapping[str, Any], field: str, where: str, hint: str) -> tuple[str, Any]:
    """One field as ("text", str) or ("messages", list); raise naming the field otherwise."""
    value = row.get(field)
    if _missing(value):
        raise InvalidTrainingRequest(f"{where}: field {field!r} is missing; {hint}")
    if isinstance(value, str):
        if not value.strip() and field != "prompt":
            raise InvalidTrainingRequest(f"{where}: field {field!r} is an empty string; {hint}")
        return "text", value
    if isinstance(value, list | tuple):
        return "messages", _messages(value, where, field, hint)
    raise InvalidTrainingRequest(
        f"{where}: field {field!r} is {type(value).__name__}; it must be a string or a list of messages"
    )


def _loads_messages(value: Any, where: str, field: str, hint: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidTrainingRequest(
                f"{where}: field {field!r} is a string but not JSON of a message list"
            ) from None
    return _messages(value, where, field, hint)


def _rows(rows: Iterable[Mapping[str, Any]], dataset_id: str) -> list[Mapping[str, Any]]:
    out = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidTrainingRequest(f"{_where(dataset_id, index)} is {type(row).__name__}, not an object")
        out.append(row)
    if not out:
        raise InvalidTrainingRequest(f"dataset {dataset_id!r} has no rows: append rows or register another dataset")
    return out


def preference_rows(rows: Iterable[Mapping[str, Any]], dataset_id: str) -> list[dict[str, Any]]:
    """Checked preference rows {prompt, chosen, rejected}; raise on the first bad one."""
    checked = []
    form0: str | None = None
    for index, row in enumerate(_rows(rows, dataset_id)):
        where = _where(dataset_id, index)
        values = {f: _value(row, f, where, _PREFERENCE_HINT) for f in PREFERENCE_FIELDS}
        forms = {f: form for f, (form, _) in values.items()}
        if len(set(forms.values())) > 1:
            detail = ", ".join(
                f"{f!r} is {'a message list' if k == 'messages' else 'a string'}" for f, k in forms.items()
            )
            raise InvalidTrainingRequest(f"{where}: {detail}; use one form for all three fields")
        form = forms["prompt"]
        if form0 is None:
            form0 = form
        elif form != form0:
            raise InvalidTrainingRequest(
                f"{where}: fields are {_form_name(form)} but row 0 uses {_form_name(form0)}; "
                "use one form throughout the dataset"
            )
        if form == "messages":
            for f in ("chosen", "rejected"):
                if not any(m["role"] == "assistant" for m in values[f][1]):
                    raise InvalidTrainingRequest(f"{where}: field {f!r} has no assistant message")
        checked.append({f: v for f, (_, v) in values.items()})
    return checked


def _form_name(form: str) -> str:
    return "message lists" if form == "messages" else "strings"


def _sft_form(row: Mapping[str, Any]) -> str | None:
    def has(f: str) -> bool:
        return not _missing(row.get(f))

    if has("messages"):
        return "messages"
    if has("dialog"):
        return "dialog"
    if has("prompt") or has("completion"):
        return "prompt_completion"
    if has("chat_completion_input"):
        return "chat_completion_input"
    if has("input_query"):
        return "input_query"
    return None


def sft_rows(rows: Iterable[Mapping[str, Any]], dataset_id: str) -> list[dict[str, Any]]:
    """Checked supervised rows in TRL's shape ({prompt, completion} or {messages})."""
    rows = _rows(rows, dataset_id)
    form0 = _sft_form(rows[0])
    if form0 is None:
        raise InvalidTrainingRequest(
            f"{_where(dataset_id, 0)}: has fields {sorted(map(str, rows[0]))} and none of the supervised forms; "
            f"{_SFT_HINT}"
        )
    checked = []
    kind0: str | None = None
    for index, row in enumerate(rows):
        where = _where(dataset_id, index)
        form = _sft_form(row)
        if form != form0:
            raise InvalidTrainingRequest(
                f"{where}: does not have the fields row 0 has ({_SFT_FIELDS[form0]}); "
                "use one form throughout the dataset"
            )
        out, kind = _sft_row(row, form0, where)
        if kind0 is None:
            kind0 = kind
        elif kind != kind0:
            raise InvalidTrainingRequest(
                f"{where}: fields are {_form_name(kind)} but row 0 uses {_form_name(kind0)}; "
                "use one form throughout the dataset"
            )
        checked.append(out)
    return checked


_SFT_FIELDS = {
    "messages": "'messages'",
    "dialog": "'dialog'",
    "prompt_completion": "'prompt' and 'completion'",
    "chat_completion_input": "'chat_completion_input' and 'expected_answer'",
    "input_query": "'input_query' and 'expected_answer'",
}


def _sft_row(row: Mapping[str, Any], form: str, where: str) -> tuple[dict[str, Any], str]:
    if form in ("messages", "dialog"):
        msgs = _loads_messages(row[form], where, form, _SFT_HINT)
        if not any(m["role"] == "assistant" for m in msgs):
            raise InvalidTrainingRequest(f"{where}: field {form!r} has no assistant message to learn from")
        return {"messages": msgs}, "messages"
    if form == "prompt_completion":
        (kp, prompt), (kc, completion) = (_value(row, f, where, _SFT_HINT) for f in ("prompt", "completion"))
        if kp != kc:
            raise InvalidTrainingRequest(
                f"{where}: 'prompt' is {_form_name(kp)[:-1]} but 'completion' is {_form_name(kc)[:-1]}; use one form"
            )
        return {"prompt": prompt, "completion": completion}, kp
    if form == "chat_completion_input":
        prompt = _loads_messages(row[form], where, form, _SFT_HINT)
        kind, answer = _value(row, "expected_answer", where, _SFT_HINT)
        if kind != "text":
            raise InvalidTrainingRequest(f"{where}: field 'expected_answer' must be a string")
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}, "messages"
    kq, query = _value(row, "input_query", where, _SFT_HINT)
    ka, answer = _value(row, "expected_answer", where, _SFT_HINT)
    if kq != "text" or ka != "text":
        raise InvalidTrainingRequest(f"{where}: 'input_query' and 'expected_answer' must be strings")
    return {"prompt": query, "completion": answer}, "text"


def parse_jsonl(data: bytes | str, source: str, max_rows: int) -> list[dict[str, Any]]:
    """Rows of an uploaded JSON-lines file (blank lines skipped); 400 naming the line that is not an object."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidTrainingRequest(f"file {source!r} is not UTF-8 text ({exc}): upload JSON lines") from None
    out: list[dict[str, Any]] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InvalidTrainingRequest(
                f"file {source!r}, line {number}: not JSON ({exc}); upload one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise InvalidTrainingRequest(
                f"file {source!r}, line {number}: a {type(row).__name__}, not a JSON object; upload one object per line"
            )
        out.append(row)
        if len(out) > max_rows:
            raise InvalidTrainingRequest(
                f"file {source!r} has more than {max_rows} rows, the provider's max_rows: raise max_rows in the "
                "provider config or submit it with the trl-nats CLI"
            )
    return out
