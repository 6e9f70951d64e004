"""The artifact store against a real nats-server and a real directory: round trips, tampering, resume, memory."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trl_nats.artifacts import MANIFEST_FILE, ArtifactError, ArtifactStore, TamperedArtifact
from trl_nats.artifacts.manifest import artifact_name, parse_nats_uri, sha256_file
from trl_nats.client import Client

REPO = Path(__file__).resolve().parent.parent


def _model_dir(root: Path, name: str = "checkpoint-3", size: int = 3 << 20) -> Path:
    d = root / name
    (d / "sub").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(os.urandom(size))
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "sub" / "tokenizer.json").write_text('{"version": "1.0"}')
    (d / "empty.txt").write_bytes(b"")
    return d


def _same_tree(a: Path, b: Path) -> None:
    for p in a.rglob("*"):
        if p.is_file():
            assert (b / p.relative_to(a)).read_bytes() == p.read_bytes(), p


class Recorder:
    def __init__(self, fail_after_bytes: int | None = None) -> None:
        self.fail_after = fail_after_bytes
        self.starts: list[tuple[str, int, int]] = []
        self.moved = 0
        self.finished = False

    def start(self, label, total, done):
        self.starts.append((label, total, done))

    def advance(self, n):
        self.moved += n
        if self.fail_after is not None and self.moved >= self.fail_after:
            raise ConnectionError("link dropped")

    def finish(self):
        self.finished = True


@pytest.fixture
async def client(settings):
    c = await Client.connect(settings)
    yield c
    await c.close()


def test_names_and_uris():
    assert artifact_name(12) == artifact_name("12") == artifact_name("checkpoint-12") == "checkpoint-12"
    assert artifact_name("final") == "final"
    assert parse_nats_uri("nats://trl_artifacts/j-1/checkpoint-4") == ("trl_artifacts", "j-1", "checkpoint-4")
    for bad in ("nats://b/j/../x", "nats://b/j", "nats://b/../etc/final", "s3://b/j/final"):
        with pytest.raises(ArtifactError):
            parse_nats_uri(bad)
    with pytest.raises(ArtifactError, match="'final' or 'checkpoint-<step>'"):
        artifact_name("latest")


@pytest.mark.parametrize("backend", ["nats", "dir"])
async def test_round_trip_lists_and_deletes(client, tmp_path, backend):
    store = (
        ArtifactStore.nats(client.topo.artifacts) if backend == "nats" else ArtifactStore.directory(tmp_path / "shared")
    )
    src = _model_dir(tmp_path / "agent")
    rec = Recorder()
    stored = await store.put("j1", src, progress=rec)
    assert rec.finished and rec.moved == stored.bytes == sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    assert stored.uri == (
        "nats://trl_artifacts/j1/checkpoint-3" if backend == "nats" else str(tmp_path / "shared/j1/checkpoint-3")
    )
    assert {f.path for f in stored.manifest.files} == {
        "model.safetensors",
        "config.json",
        "sub/tokenizer.json",
        "empty.txt",
    }
    assert stored.manifest.step == 3 and not stored.manifest.final
    assert await store.names("j1") == ["checkpoint-3"]

    dest = tmp_path / "client" / "pulled"
    result = await store.pull("j1", "checkpoint-3", dest, expected_sha256=stored.manifest_sha256)
    _same_tree(src, dest)
    assert sorted(result.downloaded) == sorted(f.path for f in stored.manifest.files) and not result.kept
    assert (dest / MANIFEST_FILE).is_file() and not (dest / ".trl_nats_partial").exists()

    with pytest.raises(ArtifactError, match="the job record says"):
        await store.pull("j1", "checkpoint-3", tmp_path / "x", expected_sha256="0" * 64)
    await store.delete("j1", "checkpoint-3")
    assert await store.names("j1") == []
    with pytest.raises(ArtifactError, match="not in the artifact store"):
        await store.pull("j1", "checkpoint-3", tmp_path / "y")


async def test_tampered_chunk_is_refused(client, tmp_path):
    """A chunk replaced in the object store stream (same subject, other bytes) fails the file's sha256."""
    store = ArtifactStore.nats(client.topo.artifacts)
    src = _model_dir(tmp_path / "agent", size=3 << 20)
    await store.put("j2", src)
    info = await client.topo.artifacts.get_info("j2/checkpoint-3/model.safetensors")
    subject = f"$O.trl_artifacts.C.{info.nuid}"
    stream = "OBJ_trl_artifacts"
    first = await client.js.get_last_msg(stream, subject)  # the last chunk of the weights
    await client.js.delete_msg(stream, first.seq)
    data = bytearray(first.data)
    data[100] ^= 0xFF
    await client.js.publish(subject, bytes(data))

    dest = tmp_path / "client"
    with pytest.raises(TamperedArtifact, match="model.safetensors has sha256 .* refusing it"):
        await store.pull("j2", "checkpoint-3", dest)
    assert not (dest / "model.safetensors").exists()
    assert not list((dest / ".trl_nats_partial").rglob("*.safetensors"))


async def test_tampered_file_in_a_directory_store_is_refused(tmp_path):
    store = ArtifactStore.directory(tmp_path / "shared")
    await store.put("j3", _model_dir(tmp_path / "agent"))
    weights = tmp_path / "shared/j3/checkpoint-3/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[5] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifact, match="refusing it"):
        await store.pull("j3", "checkpoint-3", tmp_path / "client")
    assert not (tmp_path / "client" / "model.safetensors").exists()


async def test_hostile_manifest_paths_are_refused(client, tmp_path):
    manifest = {
        "schema": 1,
        "job_id": "evil",
        "name": "final",
        "files": [{"path": "../../escaped.txt", "size": 1, "sha256": "0" * 64}],
    }
    await client.topo.artifacts.put("evil/final/" + MANIFEST_FILE, json.dumps(manifest).encode())
    with pytest.raises(ArtifactError, match="not a plain relative path"):
        await ArtifactStore.nats(client.topo.artifacts).pull("evil", "final", tmp_path / "in")
    assert not (tmp_path / "escaped.txt").exists()


async def test_interrupted_pull_resumes_keeping_verified_files(client, tmp_path):
    store = ArtifactStore.nats(client.topo.artifacts)
    src = _model_dir(tmp_path / "agent", size=6 << 20)
    (src / "optimizer.pt").write_bytes(os.urandom(4 << 20))
    stored = await store.put("j4", src)
    order = [f.path for f in stored.manifest.files]
    assert order.index("config.json") < order.index("model.safetensors") < order.index("optimizer.pt")

    dest = tmp_path / "client"
    # the link drops 2 MiB into optimizer.pt: every file before it is complete and verified
    before = sum(f.size for f in stored.manifest.files[: order.index("optimizer.pt")])
    with pytest.raises(ConnectionError):
        await store.pull("j4", "checkpoint-3", dest, progress=Recorder(fail_after_bytes=before + (2 << 20)))
    assert not (dest / "optimizer.pt").exists() and (dest / "model.safetensors").is_file()

    rec = Recorder()
    result = await store.pull("j4", "checkpoint-3", dest, progress=rec)
    assert "model.safetensors" in result.kept and "config.json" in result.kept
    assert result.downloaded == ["sub/tokenizer.json", "optimizer.pt"] or result.downloaded == [
        "optimizer.pt",
        "sub/tokenizer.json",
    ]
    assert result.bytes_downloaded == rec.moved < stored.bytes
    assert rec.starts[0][2] == stored.bytes - rec.moved  # the progress bar starts at what was kept
    _same_tree(src, dest)

    # a kept file that was changed locally is not trusted: it is downloaded again
    (dest / "config.json").write_text("{}")
    again = await store.pull("j4", "checkpoint-3", dest)
    assert again.downloaded == ["config.json"]
    _same_tree(src, dest)


MEMORY_PROBE = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from pathlib import Path
    from trl_nats.artifacts import ArtifactStore
    from trl_nats.client import Client
    from trl_nats.settings import NatsSettings

    async def main(url, small, src, dest):
        client = await Client.connect(NatsSettings(servers=[url]))
        store = ArtifactStore.nats(client.topo.artifacts, max_payload=client.nc.max_payload)
        await store.put("small", Path(small), name="final")  # warm up imports and buffers on a small file first
        await store.pull("small", "final", Path(dest) / "small")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stored = await store.put("big2", Path(src), name="final")
        after_put = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await store.pull("big2", "final", Path(dest) / "big")
        after_pull = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await client.close()
        print(json.dumps({"base_kib": base, "put_kib": after_put, "pull_kib": after_pull, "bytes": stored.bytes}))

    asyncio.run(main(*sys.argv[1:]))
    """
)


def write_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file of one uint8 tensor of ``size`` bytes, written in 1 MiB blocks (never in memory)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def test_multi_hundred_mb_safetensors_round_trips_in_bounded_memory(settings, tmp_path):
    size = 320 << 20
    src = tmp_path / "final"
    src.mkdir()
    write_safetensors(src / "model.safetensors", size)
    (src / "config.json").write_text("{}")
    probe = tmp_path / "probe.py"
    probe.write_text(MEMORY_PROBE)
    small = tmp_path / "small"
    small.mkdir()
    (small / "model.safetensors").write_bytes(os.urandom(3 << 20))
    dest = tmp_path / "pulled"
    out = subprocess.run(
        [sys.executable, str(probe), settings.servers[0], str(small), str(src), str(dest)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print("memory figures", figures)
    assert figures["bytes"] > size
    grew_mib = (max(figures["put_kib"], figures["pull_kib"]) - figures["base_kib"]) / 1024
    assert grew_mib < 64, f"peak memory grew {grew_mib:.0f} MiB moving a {size >> 20} MiB file: {figures}"
    assert sha256_file(dest / "big/model.safetensors") == sha256_file(src / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(dest / "big/model.safetensors"), "np") as f:
        assert f.get_slice("w").get_shape() == [size]
