"""Where things are: the repository, the Python running the tests, the shipped datasets."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DATA = REPO / "trl_nats" / "data"
SHIPPED = DATA / "preferences.jsonl"  # the shipped DPO rows
SHIPPED_SFT = DATA / "sft.jsonl"  # the shipped SFT rows
