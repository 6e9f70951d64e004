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


def model_dir(location: str, nats_url: str, dest: Path) -> str:
    """A local directory with the model a Llama Stack answer names: a path as it is; a ``nats://`` artifact
    pulled with the core client (every file verified) into ``dest``."""
    if not location.startswith("nats://"):
        return location
    import asyncio

    from trl_nats.client import Client
    from trl_nats.settings import NatsSettings

    _bucket, job_id, name = location.removeprefix("nats://").split("/")

    async def pull() -> Path:
        async with await Client.connect(NatsSettings(servers=[nats_url])) as client:
            return (await client.pull(job_id, name, dest)).path

    return str(asyncio.run(pull()))


def assert_loads(location: str, nats_url: str, dest: Path) -> None:
    """The model a Llama Stack answer names loads with ``transformers`` and has weights."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir(location, nats_url, dest))
    assert sum(p.numel() for p in model.parameters()) > 0
