"""The job's rows: checked, then loaded into a ``datasets.Dataset`` every rank of a node shares.

Lives here: reading a JSON-lines dataset into a Dataset (with its Arrow cache under OUTPUT_DIR).
Does not live here: what a valid row is (one schema for the CLI, the provider and the recipes), nor how
long rows are cut to fit (``lengths``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trl_nats.messages import JobKind

from .contract import DATASETS_CACHE_DIR
from .runtime import DistInfo, RecipeError, barrier

if TYPE_CHECKING:
    from datasets import Dataset

_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Rows:
    dataset: Dataset
    count: int
    conversational: bool
    format: str  # e.g. "standard prompt/chosen/rejected"


def _check_messages(value: Any, where: str) -> None:
    if not isinstance(value, list) or not value:
        raise RecipeError(f"{where} must be a non-empty list of messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise RecipeError(f"{where}[{i}] must be an object with 'role' and 'content'")
        if msg.get("role") not in _ROLES:
            raise RecipeError(f"{where}[{i}].role must be one of {', '.join(_ROLES)}, got {msg.get('role')!r}")
        if not isinstance(msg.get("content"), str):
            raise RecipeError(f"{where}[{i}].content must be a string")


def _row_format(row: dict[str, Any], kind: JobKind, where: str) -> str:
    """Check one row's fields; return its format name ("standard" or "conversational", with the field set)."""
    if kind is JobKind.dpo:
        fields = ("prompt", "chosen", "rejected")
    elif "messages" in row:
        fields = ("messages",)
    elif "text" in row and "prompt" not in row:
        fields = ("text",)  # plain language modelling: TRL trains on the whole text
    else:
        fields = ("prompt", "completion")
    for name in fields:
        if name not in row:
            if kind is JobKind.sft:
                raise RecipeError(
                    f"{where}: missing field '{name}' (sft rows need prompt+completion, messages or text)"
                )
            raise RecipeError(f"{where}: missing field '{name}'")
    conversational = isinstance(row[fields[0]], list)
    for name in fields:
        value = row[name]
        if conversational:
            _check_messages(value, f"{where}: field '{name}'")
        elif not isinstance(value, str):
            raise RecipeError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
        elif name != "prompt" and not value.strip():
            raise RecipeError(f"{where}: field '{name}' is empty")
    return f"{'conversational' if conversational else 'standard'} {'/'.join(fields)}"


def validate_rows(path: Path, kind: JobKind) -> tuple[int, str]:
    """Check every row of a JSON-lines dataset; return (row count, format).

    Raises RecipeError naming the row (1-based line number) and field of the first problem.
    """
    first_format: str | None = None
    rows = 0
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read dataset {path}: {exc}") from None
    with fh:
        for lineno, line in enumerate(fh, start=1):
            where = f"{path.name} row {lineno}"
            if not line.strip():
                raise RecipeError(f"{where}: empty line (one JSON object per line, no blank lines)")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecipeError(f"{where}: not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise RecipeError(f"{where}: must be a JSON object, got {type(row).__name__}")
            fmt = _row_format(row, kind, where)
            if first_format is None:
                first_format = fmt
            elif fmt != first_format:
                raise RecipeError(f"{where}: is {fmt} but row 1 is {first_format}; use one format for all rows")
            rows += 1
    if rows == 0 or first_format is None:
        raise RecipeError(f"dataset {path.name} has no rows: upload a file with one JSON object per line")
    return rows, first_format


def load_rows(path: Path, kind: JobKind, output_dir: Path, dist_info: DistInfo) -> Rows:
    """Validate, then load with ``datasets.load_dataset("json")``.

    The Arrow cache lives in ``OUTPUT_DIR/.hf_datasets`` (never next to the dataset, which may sit in a source
    tree); each node's local rank 0 builds it, the node's other ranks reuse it, so the ranks of a node share
    its cache files (TRL keys its precomputed reference log-probs on them). Per node, not per job: the nodes
    of a multi-node job each have their own output dir and disk.
    """
    count, fmt = validate_rows(path, kind)  # every rank checks, so every rank fails the same way
    from datasets import load_dataset

    builds = dist_info.local_rank == 0
    if not builds:
        barrier()
    try:
        ds = load_dataset("json", data_files=str(path), split="train", cache_dir=str(output_dir / DATASETS_CACHE_DIR))
    finally:
        if builds:
            barrier()
    return Rows(ds, count, fmt.startswith("conversational"), fmt)
