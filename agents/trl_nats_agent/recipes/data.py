"""The job's rows: checked, then loaded into a ``datasets.Dataset`` every rank of a node shares.

Lives here: reading a JSON-lines dataset into a Dataset (with its Arrow cache under OUTPUT_DIR).
Does not live here: what a valid row is (``trl_nats.rows``, the one schema the CLI, the provider and the
recipes share), nor how long rows are cut to fit (``lengths``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trl_nats.messages import JobKind
from trl_nats.rows import RowError, RowsCheck, read_jsonl

from .contract import DATASETS_CACHE_DIR
from .runtime import DistInfo, RecipeError, barrier

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass(frozen=True)
class Rows:
    dataset: Dataset
    count: int
    conversational: bool
    format: str  # "prompt/chosen/rejected", "prompt/completion", "messages" or "text"


def check_file(path: Path, kind: JobKind) -> tuple[RowsCheck, bool]:
    """The file's rows checked by THE row schema (``trl_nats.rows``); and whether the file already holds
    exactly the canonical rows (else the recipe trains on a canonical copy)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"cannot read dataset {path}: {exc}") from None
    try:
        check = read_jsonl(data, kind)
    except RowError as exc:
        raise RecipeError(f"{path.name} {exc}") from None
    lines = data.decode("utf-8").splitlines()
    canonical = len(lines) == check.count and all(
        json.loads(line) == row for line, row in zip(lines, check.rows, strict=True)
    )
    return check, canonical


def validate_rows(path: Path, kind: JobKind) -> RowsCheck:
    """Check every row of a JSON-lines dataset file; RecipeError naming the row and field of the first problem."""
    return check_file(path, kind)[0]


def _canonical_copy(check: RowsCheck, output_dir: Path, builds: bool) -> Path:
    """The canonical rows as JSON lines under the datasets cache, named by their content (written whole)."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in check.rows)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = output_dir / DATASETS_CACHE_DIR / f"rows-{digest}.jsonl"
    if builds and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def load_rows(path: Path, kind: JobKind, output_dir: Path, dist_info: DistInfo) -> Rows:
    """Validate, then load with ``datasets.load_dataset("json")``.

    The Arrow cache lives in ``OUTPUT_DIR/.hf_datasets`` (never next to the dataset, which may sit in a source
    tree); each node's local rank 0 builds it, the node's other ranks reuse it, so the ranks of a node share
    its cache files (TRL keys its precomputed reference log-probs on them). Per node, not per job: the nodes
    of a multi-node job each have their own output dir and disk.
    """
    check, canonical = check_file(path, kind)  # every rank checks, so every rank fails the same way
    from datasets import load_dataset

    builds = dist_info.local_rank == 0
    if not builds:
        barrier()
    try:
        source = path if canonical else _canonical_copy(check, output_dir, builds)
        ds = load_dataset("json", data_files=str(source), split="train", cache_dir=str(output_dir / DATASETS_CACHE_DIR))
    finally:
        if builds:
            barrier()
    return Rows(ds, check.count, check.conversational, check.format)
