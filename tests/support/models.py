"""The tiny local model (no hub on this machine): built by the agent's own builder, run as a program."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from support.paths import PYTHON


def tiny_module() -> str:
    """The builder's module: ``trl_nats_agent.testing.tiny``, or ``trl_nats_agent.tiny`` where it still lives."""
    spec = importlib.util.find_spec("trl_nats_agent")
    for where in (spec.submodule_search_locations or []) if spec else []:
        if (Path(where) / "testing" / "tiny.py").is_file():
            return "trl_nats_agent.testing.tiny"
    return "trl_nats_agent.tiny"


def build_tiny_model(out: Path, dataset: Path, *extra: str, timeout: float = 600) -> Path:
    """A tiny Llama and its tokenizer in ``out``, the tokenizer trained on ``dataset``'s text."""
    subprocess.run(
        [PYTHON, "-m", tiny_module(), str(out), "--dataset", str(dataset), *extra],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    return out
