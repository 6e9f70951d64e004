"""The tiny local model (no hub on this machine): built by the agent's own builder, run as a program."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.paths import PYTHON


def tiny_module() -> str:
    """The agent's tiny-model builder, run as a program."""
    return "trl_nats_agent.testing.tiny"


def build_tiny_model(out: Path, dataset: Path, *extra: str, timeout: float = 600) -> Path:
    """A tiny Llama and its tokenizer in ``out``, the tokenizer trained on ``dataset``'s text."""
    subprocess.run(
        [PYTHON, "-m", tiny_module(), str(out), "--dataset", str(dataset), *extra],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    return out
