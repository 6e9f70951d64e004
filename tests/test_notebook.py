"""examples/llama_stack.ipynb, run top to bottom against the embedded stack, so it cannot rot.

Real nats-server, agent and ``llama stack run`` (0.6.1, this venv); the notebook's own cells do
the rest over HTTP (upload, preference_optimize, status, artifacts, loading the checkpoint, cancel).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from trl_nats_provider.embedded import EmbeddedStack

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "llama_stack.ipynb"


def test_the_notebook_runs_top_to_bottom(tmp_path, tiny_model, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    with EmbeddedStack(tmp_path / "stack", slots=1, agent_args=["--heartbeat", "1"]) as stack:
        # the kernel is a child of this process: it reads these
        monkeypatch.setenv("LLAMA_STACK_URL", stack.url)
        monkeypatch.setenv("TRL_NATS_SERVERS", stack.nats_url)  # to pull the final model from the artifact store
        monkeypatch.setenv("TRL_NATS_MODEL", str(tiny_model))
        monkeypatch.setenv("TRL_NATS_STEPS", "2")
        monkeypatch.setenv("TRL_NATS_JOB_UUID", "notebook-dpo")
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    text = "\n".join(
        "".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "completed" in text and "notebook-dpo/final" in text, text
    assert "LlamaForCausalLM" in text, text
    assert "already ended as completed" in text and "algorithm_config.beta must be" in text, text
