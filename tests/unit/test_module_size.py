"""No module of the core or the agent grows past ~400 lines: past that a module holds several concerns.

Data is exempt: the dataset generator's word tables live in ``scripts/``, outside both packages, and a
module that is mostly data can be listed in ``DATA`` with the reason.
"""

from __future__ import annotations

from support import REPO

LIMIT = 400
ROOTS = (REPO / "trl_nats", REPO / "agents" / "trl_nats_agent")
DATA: dict[str, str] = {}  # path relative to the repo -> why it may be longer


def test_no_module_is_over_the_limit():
    over = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            name = str(path.relative_to(REPO))
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > LIMIT and name not in DATA:
                over.append(f"{name}: {lines} lines")
    assert not over, f"modules over {LIMIT} lines (split them by concern):\n" + "\n".join(over)


def test_the_walk_finds_the_modules():
    found = {str(p.relative_to(REPO)) for root in ROOTS for p in root.rglob("*.py")}
    assert "trl_nats/store.py" in found and "agents/trl_nats_agent/__main__.py" in found
