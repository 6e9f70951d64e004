"""Checks made once before any rank starts, for failures that no retry can fix.

Only cheap ones: the model named by the job must be a saved model directory on
this node (one with ``config.json``), or a hub id the node can reach; an agent
run offline (``--offline``) reaches the hub only through its local hub cache.
The dataset's rows must pass the one row schema (``trl_nats/rows.py``), checked
here for datasets up to ``ROWS_CHECK_MAX_BYTES`` (the recipe checks them all again).
Each problem is one sentence that says what to change; the attempt then ends
as a bad job (see ``outcome.py``): failed at once, not retried.
"""

from __future__ import annotations

from pathlib import Path

from trl_nats.messages import JobKind
from trl_nats.rows import RowError, read_jsonl
from trl_nats_agent.policy import is_hub_id

# a larger dataset is left to the recipe: reading it twice would cost more than the early answer saves
ROWS_CHECK_MAX_BYTES = 64 << 20


def model_problem(model: str, *, offline: bool, cwd: Path, node: str) -> str | None:
    """Why ``model`` cannot load on this node, or None. Relative paths are read from ``cwd``, as the ranks do."""
    path = Path(model).expanduser()
    path = path if path.is_absolute() else cwd / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            return (
                f"model {model!r} is a directory on node {node} without a config.json: "
                "name a directory written by save_pretrained (it holds config.json and the weights)"
            )
        return None
    if not is_hub_id(model):
        return (
            f"model {model!r} does not exist on node {node}: "
            "name a model directory that exists on the agents' nodes, or a hub id"
        )
    if offline and not _in_hub_cache(model):
        return (
            f"model {model!r} is a hub id, but the agent on node {node} runs offline (--offline) and has no copy "
            "in its hub cache: pass a local model path, or run the agent with hub access"
        )
    return None


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id for the hub client: not in the cache
        return False


def rows_problem(path: Path, kind: JobKind, what: str = "dataset") -> str | None:
    """Why the rows at ``path`` cannot train a ``kind`` job, or None (also None when the file is too big to check)."""
    if path.stat().st_size > ROWS_CHECK_MAX_BYTES:
        return None
    try:
        read_jsonl(path.read_bytes(), kind)
    except RowError as exc:
        return f"{what} {exc}"
    return None
