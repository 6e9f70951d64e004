"""Sample rows for jobs whose content does not matter (the no-op recipe, the scheduler, faults)."""

from __future__ import annotations


def preference_rows(n: int) -> list[dict[str, str]]:
    """``n`` distinct, valid DPO rows."""
    return [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad"} for i in range(n)]


ROWS = preference_rows(4)
