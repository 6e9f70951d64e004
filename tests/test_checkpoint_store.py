"""The checkpoint store against a real nats-server's object store, and what it refuses to load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trl_nats_agent.checkpoints import COMPLETE_MARKER, CheckpointStore, CheckpointStoreError

from trl_nats.client import Client

pytestmark = pytest.mark.integration


def _checkpoint(root: Path, step: int, size: int = 3 << 20) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(os.urandom(size))  # several chunks
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (path / COMPLETE_MARKER).write_text(json.dumps({"step": step}))
    return path


async def test_nats_store_round_trip_checks_sha256_and_size_limit(settings, tmp_path):
    client = await Client.connect(settings)
    try:
        store = CheckpointStore("nats", artifacts=client.topo.artifacts, max_bytes=8 << 20)
        src = _checkpoint(tmp_path / "out", 4)
        stored = await store.store("j1", src)
        assert stored.location == "nats://trl_artifacts/j1/checkpoint-4"
        fetched = await store.fetch(stored.location, stored.sha256, tmp_path / "elsewhere", [])
        assert fetched == tmp_path / "elsewhere" / "checkpoint-4"
        for name in ("model.safetensors", "trainer_state.json", COMPLETE_MARKER):
            assert (fetched / name).read_bytes() == (src / name).read_bytes()

        with pytest.raises(CheckpointStoreError, match="has sha256 .* the job record says"):
            await store.fetch(stored.location, "0" * 64, tmp_path / "again", [])
        with pytest.raises(CheckpointStoreError, match="not in the artifact store"):
            await store.fetch("nats://trl_artifacts/j1/checkpoint-99", None, tmp_path / "x", [])

        big = _checkpoint(tmp_path / "big", 8, size=9 << 20)
        with pytest.raises(
            CheckpointStoreError, match=r"over the NATS checkpoint store's limit .*--checkpoint-store DIR"
        ):
            await store.store("j1", big)
        (big / COMPLETE_MARKER).unlink()
        with pytest.raises(CheckpointStoreError, match="not every rank finished writing it"):
            await store.store("j1", big)
    finally:
        await client.close()


async def test_hostile_artifacts_and_paths_are_refused(settings, tmp_path):
    client = await Client.connect(settings)
    try:
        store = CheckpointStore("nats", artifacts=client.topo.artifacts)
        manifest = {
            "job_id": "evil",
            "name": "checkpoint-1",
            "files": [{"path": "../../escaped.txt", "size": 6, "sha256": "0" * 64}],
        }
        await client.topo.artifacts.put("evil/checkpoint-1/trl_nats_manifest.json", json.dumps(manifest).encode())
        await client.topo.artifacts.put("evil/checkpoint-1/../../escaped.txt", b"gotcha")
        with pytest.raises(CheckpointStoreError, match="not a plain relative path"):
            await store.fetch("nats://trl_artifacts/evil/checkpoint-1", None, tmp_path / "in", [])
        assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
        with pytest.raises(CheckpointStoreError, match="not an artifact URI"):
            await store.fetch("nats://trl_artifacts/evil/../checkpoint-1", None, tmp_path / "in", [])

        local = _checkpoint(tmp_path / "other-root", 2, size=10)
        with pytest.raises(CheckpointStoreError, match="outside this agent's output and checkpoint roots"):
            await store.fetch(str(local), None, tmp_path / "in", [tmp_path / "outputs"])
        with pytest.raises(CheckpointStoreError, match="not reachable from this agent"):
            await store.fetch(str(tmp_path / "outputs" / "checkpoint-3"), None, tmp_path / "in", [tmp_path / "outputs"])
    finally:
        await client.close()


def test_ranks_load_no_pickled_code_from_a_checkpoint(tmp_path):
    """The agent's rank environment forces torch.load to weights_only, even where a caller asks for less."""
    from trl_nats_agent.capacity import cpu_slots
    from trl_nats_agent.settings import AgentSettings
    from trl_nats_agent.workspace import rank_env

    cfg = AgentSettings(state_dir=tmp_path, device="cpu", gpus=cpu_slots(1))
    env = rank_env(dict(os.environ), cfg=cfg, job_id="j", attempt=1, gpus=[0], events_socket=None, ifname=None)
    assert env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1" and env["TRL_NATS_ALLOW_REMOTE_CODE"] == "0"

    marker = tmp_path / "pwned"
    script = f"""
import os, pickle, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
torch.save({{"state": Evil()}}, "{tmp_path}/optimizer.pt")
try:
    torch.load("{tmp_path}/optimizer.pt", weights_only=False)
except pickle.UnpicklingError as exc:
    print("refused:", str(exc).splitlines()[0])
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert "refused:" in out.stdout, out.stdout + out.stderr
    assert not marker.exists(), "pickled code ran"
