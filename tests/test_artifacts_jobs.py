"""A real agent stores a DPO job's checkpoints and final model; a client with its own disk pulls them.

The client shares nothing with the agent but the nats-server: it pulls into its own temp dir, loads
with transformers, and compares the weights with the agent's copy. The CLI lists, pulls and prunes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trl_nats.artifacts import ArtifactError
from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, Resources, TrainingParams

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "trl_nats" / "data" / "preferences.jsonl"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trl_nats.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


async def test_final_model_and_checkpoint_pulled_by_a_client_without_shared_disk(
    settings, start_agent, tiny_model, tmp_path, env_for, tmp_path_factory
):
    agent = start_agent("node", slots=1)  # default store: the NATS object store
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()[:32]]
    client_dir = tmp_path_factory.mktemp("laptop")  # the client's own disk
    client = await Client.connect(settings)
    try:
        spec = JobSpec(
            job_id="pullme",
            model=str(tiny_model),
            dataset=await client.upload_dataset(rows),
            resources=Resources(gpus_per_node=1),
            params=TrainingParams(
                max_steps=4, per_device_batch_size=2, learning_rate=5e-4, max_length=128, save_steps=2
            ),
            max_attempts=1,
        )
        record = await (await client.submit(spec)).wait(timeout=900)
        assert record.state is JobState.completed, record.error + agent.log()

        # the record names every artifact: nats:// URI, manifest sha256, size
        stored = {("final" if c.final else f"checkpoint-{c.step}"): c for c in record.checkpoints if c.location}
        assert set(stored) == {"checkpoint-2", "checkpoint-4", "final"}, record.checkpoints
        assert stored["final"].location == "nats://trl_artifacts/pullme/final"
        assert all(c.sha256 and c.bytes and c.bytes > 100_000 for c in stored.values())

        infos = await client.artifacts("pullme")
        assert [(i.name, i.present) for i in infos] == [("checkpoint-2", True), ("checkpoint-4", True), ("final", True)]

        from transformers import AutoModelForCausalLM, AutoTokenizer

        agent_out = agent.state_dir / "outputs" / "pullme"
        final = await client.pull("pullme", "final", client_dir / "final")
        model = AutoModelForCausalLM.from_pretrained(final.path)
        AutoTokenizer.from_pretrained(final.path)
        ours, theirs = _weights(final.path), _weights(agent_out / "final")
        assert ours.keys() == theirs.keys() and ours
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        assert model.num_parameters() > 0

        mid = await client.pull("pullme", 2, client_dir / "ckpt2")
        AutoModelForCausalLM.from_pretrained(mid.path)
        ours, theirs = _weights(mid.path), _weights(agent_out / "checkpoint-2")
        assert all(torch.equal(ours[k], theirs[k]) for k in ours) and ours.keys() == theirs.keys()
        assert (mid.path / "optimizer.pt").is_file() and (mid.path / "trainer_state.json").is_file()

        with pytest.raises(ArtifactError, match="no stored artifact 'checkpoint-3'.*checkpoint-2, checkpoint-4, final"):
            await client.pull("pullme", 3, client_dir / "nope")

        # the CLI: list, pull (again: everything already verified is kept), prune keeping the newest checkpoint
        env = env_for(PYTHONPATH=os.environ.get("PYTHONPATH", ""))
        out = _cli(env, "artifacts", "pullme")
        assert out.returncode == 0, out.stderr
        assert (
            "nats://trl_artifacts/pullme/checkpoint-2" in out.stdout
            and "nats://trl_artifacts/pullme/final" in out.stdout
        )
        out = _cli(env, "pull", "pullme", "-o", str(client_dir / "final"), "--json")
        assert out.returncode == 0, out.stderr
        pulled = json.loads(out.stdout)
        assert pulled["downloaded"] == [] and len(pulled["kept"]) == len(final.manifest.files)
        out = _cli(env, "prune", "pullme", "--keep", "1")
        assert out.returncode == 0 and "deleted checkpoint-2" in out.stdout, out.stdout + out.stderr
        infos = await client.artifacts("pullme")
        assert [(i.name, i.present) for i in infos] == [
            ("checkpoint-2", False),
            ("checkpoint-4", True),
            ("final", True),
        ]
        out = _cli(env, "prune", "pullme")
        assert "deleted checkpoint-4" in out.stdout and "final" not in out.stdout
        assert [i.name for i in await client.artifacts("pullme") if i.present] == ["final"]
        out = _cli(env, "pull", "pullme", "--checkpoint", "2", "-o", str(client_dir / "gone"))
        assert out.returncode == 2 and "not in the artifact store" in out.stderr and "pruned" in out.stderr
    finally:
        await client.close()
