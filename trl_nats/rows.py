"""THE dataset row schema: every consumer (CLI, provider, recipes) checks rows here.

A row one of them accepts is accepted by all, and comes back in one canonical
shape, the one TRL's trainers read, with only the fields they use (so equal
data always has the same content address).

Preference (DPO) rows: ``prompt``, ``chosen`` and ``rejected``, each a string,
or each a list of ``{role, content}`` messages (only ``prompt`` may be an empty
string). OpenAI preference fine-tuning lines (``input.messages``,
``preferred_output``, ``non_preferred_output``) become conversational
``prompt``/``chosen``/``rejected`` rows.

Supervised (SFT) rows: ``prompt`` + ``completion`` (strings, or message lists),
``messages`` (a conversation with at least one assistant message: also the
OpenAI fine-tuning line), or ``text`` (language modelling on the whole string).

All rows of a dataset have one format. Errors are :class:`RowError`: the
message names the row and the field and says how to fix it.

Also here: :func:`encode_rows`, the one byte form of rows (their content address).
Does not live here: reading a file or a Llama Stack dataset (the callers), the
Llama Stack row forms (the provider converts them to these rows first).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from trl_nats.messages import JobKind

ROLES = ("system", "user", "assistant", "tool")
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")
OPENAI_PREFERENCE_FIELDS = ("input", "preferred_output", "non_preferred_output")

PREFERENCE_HINT = (
    "preference rows need 'prompt', 'chosen' and 'rejected', each a string or each a list of {role, content} "
    "messages (or OpenAI's 'input', 'preferred_output' and 'non_preferred_output')"
)
SFT_HINT = "supervised rows need 'prompt' and 'completion', or 'messages', or 'text'"


_row_encoder = msgspec.json.Encoder(order="sorted")


class RowError(ValueError):
    """A row that cannot be trained on.

    ``line`` is the row's number as the message shows it (1-based unless the caller numbered from
    another start; for :func:`read_jsonl` the line of the file), None for the dataset as a whole;
    ``field`` the field at fault, if one is. ``reason`` is the message without the row number.
    """

    def __init__(self, reason: str, *, line: int | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.field = field
        super().__init__(reason if line is None else f"row {line}: {reason}")


@dataclass(frozen=True)
class RowsCheck:
    rows: list[dict[str, Any]]  # canonical rows
    count: int
    format: str  # "prompt/chosen/rejected", "prompt/completion", "messages" or "text"
    conversational: bool  # message lists (a chat template is needed) rather than strings


def _missing(value: Any) -> bool:
    # pandas (behind Llama Stack's datasetio) fills a column a row lacks with NaN
    return value is None or (isinstance(value, float) and math.isnan(value))


def _messages(value: Any, field: str, hint: str) -> list[dict[str, str]]:
    """A message list as plain {role, content} dicts."""
    if not isinstance(value, list | tuple) or not value:
        raise RowError(f"field {field!r} must be a non-empty list of messages; {hint}", field=field)
    out = []
    for n, msg in enumerate(value):
        if not isinstance(msg, Mapping):
            raise RowError(
                f"field {field!r} message {n} is {type(msg).__name__}, not an object with role and content",
                field=field,
            )
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise RowError(f"field {field!r} message {n} has role {role!r}; use one of {', '.join(ROLES)}", field=field)
        if not isinstance(content, str):
            raise RowError(
                f"field {field!r} message {n} content must be a string, not {type(content).__name__}", field=field
            )
        out.append({"role": role, "content": content})
    return out


def _value(row: Mapping[str, Any], field: str, hint: str) -> tuple[bool, Any]:
    """One field as (conversational, value): a string, or a checked message list."""
    value = row.get(field)
    if _missing(value):
        raise RowError(f"field {field!r} is missing; {hint}", field=field)
    if isinstance(value, str):
        if not value.strip() and field != "prompt":
            raise RowError(f"field {field!r} is an empty string; {hint}", field=field)
        return False, value
    if isinstance(value, list | tuple):
        return True, _messages(value, field, hint)
    raise RowError(f"field {field!r} is {type(value).__name__}; it must be a string or a list of messages", field=field)


def _form_name(conversational: bool) -> str:
    return "message lists" if conversational else "strings"


def _needs_assistant(messages: list[dict[str, str]], field: str, what: str = "") -> None:
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError(f"field {field!r} has no assistant message{what}", field=field)


def _preference(row: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    if any(not _missing(row.get(f)) for f in OPENAI_PREFERENCE_FIELDS):
        return _openai_preference(row), True
    values = {f: _value(row, f, PREFERENCE_HINT) for f in PREFERENCE_FIELDS}
    kinds = {conv for conv, _ in values.values()}
    if len(kinds) > 1:
        detail = ", ".join(f"{f!r} is {'a message list' if c else 'a string'}" for f, (c, _) in values.items())
        raise RowError(f"{detail}; use one form for all three fields")
    conversational = values["prompt"][0]
    if conversational:
        for f in ("chosen", "rejected"):
            _needs_assistant(values[f][1], f)
    return {f: v for f, (_, v) in values.items()}, conversational


def _openai_preference(row: Mapping[str, Any]) -> dict[str, Any]:
    for f in OPENAI_PREFERENCE_FIELDS:
        if _missing(row.get(f)):
            raise RowError(f"field {f!r} is missing; {PREFERENCE_HINT}", field=f)
    source = row["input"]
    if not isinstance(source, Mapping) or _missing(source.get("messages")):
        raise RowError(
            f"field 'input' must be an object with 'messages' (the conversation before the answer); {PREFERENCE_HINT}",
            field="input",
        )
    prompt = _messages(source["messages"], "input.messages", PREFERENCE_HINT)
    chosen = _messages(row["preferred_output"], "preferred_output", PREFERENCE_HINT)
    rejected = _messages(row["non_preferred_output"], "non_preferred_output", PREFERENCE_HINT)
    _needs_assistant(chosen, "preferred_output")
    _needs_assistant(rejected, "non_preferred_output")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _sft_format(row: Mapping[str, Any]) -> str | None:
    def has(f: str) -> bool:
        return not _missing(row.get(f))

    if has("messages"):
        return "messages"
    if has("prompt") or has("completion"):
        return "prompt/completion"
    if has("text"):
        return "text"
    return None


def _supervised(row: Mapping[str, Any]) -> tuple[dict[str, Any], str, bool]:
    fmt = _sft_format(row)
    if fmt == "messages":
        msgs = _messages(row["messages"], "messages", SFT_HINT)
        _needs_assistant(msgs, "messages", " to learn from")
        return {"messages": msgs}, fmt, True
    if fmt == "prompt/completion":
        (cp, prompt), (cc, completion) = (_value(row, f, SFT_HINT) for f in ("prompt", "completion"))
        if cp != cc:
            raise RowError(f"'prompt' is {_form_name(cp)[:-1]} but 'completion' is {_form_name(cc)[:-1]}; use one form")
        return {"prompt": prompt, "completion": completion}, fmt, cp
    if fmt == "text":
        text = row["text"]
        if not isinstance(text, str):
            raise RowError(f"field 'text' is {type(text).__name__}; it must be a string", field="text")
        if not text.strip():
            raise RowError(f"field 'text' is an empty string; {SFT_HINT}", field="text")
        return {"text": text}, fmt, False
    raise RowError(f"has fields {sorted(map(str, row))} and none of the supervised forms; {SFT_HINT}")


def _check(row: Any, kind: JobKind) -> tuple[dict[str, Any], str, bool]:
    if not isinstance(row, Mapping):
        raise RowError(f"is {type(row).__name__}, not a JSON object with the row's fields")
    if kind is JobKind.dpo:
        out, conversational = _preference(row)
        return out, "prompt/chosen/rejected", conversational
    return _supervised(row)


def _at(exc: RowError, line: int | None) -> RowError:
    return RowError(exc.reason, line=line, field=exc.field)


def check_row(row: Mapping[str, Any], kind: JobKind, *, line: int | None = None) -> dict[str, Any]:
    """One row in the canonical format; raises RowError (numbered ``line``) when it cannot be trained on."""
    try:
        return _check(row, kind)[0]
    except RowError as exc:
        raise _at(exc, line) from None


def _check_numbered(numbered: Iterable[tuple[int, Any]], kind: JobKind) -> RowsCheck:
    rows: list[dict[str, Any]] = []
    first: tuple[int, str, bool] | None = None
    for line, row in numbered:
        try:
            out, fmt, conversational = _check(row, kind)
        except RowError as exc:
            raise _at(exc, line) from None
        if first is None:
            first = (line, fmt, conversational)
        elif fmt != first[1]:
            raise RowError(
                f"has the fields of {fmt} rows but row {first[0]} has {first[1]}; use one form throughout the dataset",
                line=line,
            )
        elif conversational != first[2]:
            raise RowError(
                f"fields are {_form_name(conversational)} but row {first[0]} uses {_form_name(first[2])}; "
                "use one form throughout the dataset",
                line=line,
            )
        rows.append(out)
    if first is None:
        raise RowError("the dataset has no rows: add at least one (one JSON object per line)")
    return RowsCheck(rows=rows, count=len(rows), format=first[1], conversational=first[2])


def check_rows(rows: Iterable[Mapping[str, Any]], kind: JobKind, *, first: int = 1) -> RowsCheck:
    """Check every row (numbered from ``first``) and bring it to the canonical format; raise at the first bad one."""
    return _check_numbered(enumerate(rows, start=first), kind)


def _json_lines(data: bytes | str) -> Iterable[tuple[int, Any]]:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield line, json.loads(raw)
        except ValueError as exc:
            raise RowError(
                f"not valid JSON ({exc}); the dataset must be JSON lines, one object per line", line=line
            ) from None


def read_jsonl(data: bytes | str, kind: JobKind) -> RowsCheck:
    """Parse and check a JSON-lines dataset; rows are numbered by their line (blank lines are skipped)."""
    try:
        return _check_numbered(_json_lines(data), kind)
    except UnicodeDecodeError as exc:
        raise RowError(f"the dataset is not UTF-8 text ({exc}); save it as UTF-8 JSON lines") from None


def encode_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[bytes, int]:
    """Rows as canonical JSON lines (sorted keys), so equal data has one content address."""
    lines = []
    for row in rows:
        lines.append(_row_encoder.encode(row))
    return (b"\n".join(lines) + b"\n" if lines else b""), len(lines)
