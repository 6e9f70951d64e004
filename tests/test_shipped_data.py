"""The tiny datasets shipped in ``trl_nats/data`` are well formed and reproducible.

The demo and the training tests read these files instead of downloading a dataset,
so a broken row, a duplicate or a hand edit that the generator would undo should
fail here rather than halfway through a training run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "trl_nats" / "data"
GENERATOR = DATA.parent.parent / "scripts" / "make_datasets.py"
MAX_CHARS = 400

FILES = {
    # name: (fields, inclusive row-count range)
    "preferences.jsonl": (("prompt", "chosen", "rejected"), (300, 400)),
    "sft.jsonl": (("prompt", "completion"), (150, 250)),
}


def load(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path.name} must end with a newline"
    rows = []
    for lineno, line in enumerate(text.split("\n")[:-1], start=1):
        assert line.strip(), f"{path.name}:{lineno} is blank"
        row = json.loads(line)
        assert isinstance(row, dict), f"{path.name}:{lineno} is not a JSON object"
        rows.append(row)
    return rows


@pytest.mark.parametrize("name", sorted(FILES))
def test_rows_are_well_formed(name: str) -> None:
    fields, (lo, hi) = FILES[name]
    rows = load(DATA / name)
    assert lo <= len(rows) <= hi, f"{name} has {len(rows)} rows, want {lo}..{hi}"
    for i, row in enumerate(rows, start=1):
        assert tuple(row) == fields, f"{name} row {i} has fields {list(row)}, want {list(fields)}"
        for field in fields:
            value = row[field]
            assert isinstance(value, str), f"{name} row {i}: {field} is {type(value).__name__}"
            assert value.strip(), f"{name} row {i}: {field} is empty"
            assert value == value.strip(), f"{name} row {i}: {field} has leading/trailing whitespace"
            assert len(value) <= MAX_CHARS, f"{name} row {i}: {field} is {len(value)} chars"


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_duplicates(name: str) -> None:
    rows = load(DATA / name)
    prompts = [row["prompt"] for row in rows]
    dup_prompts = sorted({p for p in prompts if prompts.count(p) > 1})
    assert not dup_prompts, f"duplicate prompts in {name}: {dup_prompts[:5]}"
    serialized = [json.dumps(row, sort_keys=True) for row in rows]
    assert len(set(serialized)) == len(serialized), f"duplicate rows in {name}"


def test_chosen_differs_from_rejected() -> None:
    for i, row in enumerate(load(DATA / "preferences.jsonl"), start=1):
        assert row["chosen"] != row["rejected"], f"row {i}: chosen == rejected for {row['prompt']!r}"


def test_sft_prompts_are_not_preference_prompts() -> None:
    pref = {row["prompt"] for row in load(DATA / "preferences.jsonl")}
    overlap = sorted(pref & {row["prompt"] for row in load(DATA / "sft.jsonl")})
    assert not overlap, f"prompts in both files: {overlap[:5]}"


def test_generator_reproduces_shipped_files(tmp_path: Path) -> None:
    out = tmp_path / "regenerated"
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for name in sorted(FILES):
        shipped = (DATA / name).read_bytes()
        regenerated = (out / name).read_bytes()
        assert regenerated == shipped, (
            f"{name} differs from what make_datasets.py generates; "
            "edit the generator and rerun `python scripts/make_datasets.py`, don't edit the file"
        )
