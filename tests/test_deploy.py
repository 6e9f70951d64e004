"""The deployment files: compose.yaml against the Compose schema, the Dockerfiles against the
repository, the container's Llama Stack config against the shipped one, and the NATS config
with its role users running a real job (no Docker engine here, so these stand in for `docker
compose config` and `docker build`).
"""

from __future__ import annotations

import asyncio
import glob
import json
import re
import shlex
from pathlib import Path

import jsonschema
import nats
import pytest
import yaml
from support import NOOP, REPO

from trl_nats.client import Client
from trl_nats.messages import JobSpec, JobState, Resources
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings

COMPOSE = REPO / "compose.yaml"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
NATS_CONF = REPO / "deploy" / "nats" / "nats-server.conf"
PASSWORDS = {
    "TRL_NATS_PROVIDER_PASSWORD": "provider-secret",
    "TRL_NATS_AGENT_PASSWORD": "agent-secret",
    "TRL_NATS_VIEWER_PASSWORD": "viewer-secret",
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$")


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        val = env.get(name)
        unset_or_empty = val is None or (op is not None and op.startswith(":") and val == "")
        if op and op.endswith("?") and unset_or_empty:
            raise ValueError(f"required variable {name} is missing: {arg}")
        if op and op.endswith("-") and unset_or_empty:
            return arg
        return val or ""

    return _VAR.sub(sub, value)


def _typed(value):
    """After interpolation Compose converts numeric strings where the schema wants numbers."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def load_compose(env: dict[str, str]) -> dict:
    raw = yaml.safe_load(COMPOSE.read_text())
    data = interpolate(raw, env)
    for svc in data["services"].values():  # the fields where a string would be a schema error
        if "deploy" in svc:
            svc["deploy"] = _typed(svc["deploy"])
    return data


def test_compose_file_passes_the_compose_schema():
    data = load_compose(dict(PASSWORDS))
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    services = data["services"]
    assert {"nats", "llama-stack", "agent", "agent-cpu"} <= services.keys()
    # JetStream on a persistent volume, with the repo's least-privilege config
    assert "nats-data:/data" in services["nats"]["volumes"]
    assert "./deploy/nats/nats-server.conf:/etc/nats/nats-server.conf:ro" in services["nats"]["volumes"]
    gpu = services["agent"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    assert services["agent"]["environment"]["TRL_NATS_USER"] == "agent"
    assert services["llama-stack"]["environment"]["TRL_NATS_USER"] == "provider"
    scaled = load_compose({**PASSWORDS, "TRL_NATS_GPU_AGENTS": "3", "TRL_NATS_GPUS_PER_AGENT": "4"})
    assert scaled["services"]["agent"]["deploy"]["replicas"] == 3
    assert not list(validator.iter_errors(scaled))


def test_compose_refuses_to_start_without_the_passwords():
    with pytest.raises(ValueError, match="TRL_NATS_AGENT_PASSWORD"):
        load_compose({k: v for k, v in PASSWORDS.items() if k != "TRL_NATS_AGENT_PASSWORD"})


def test_every_file_compose_and_the_dockerfiles_use_exists_in_the_repo():
    data = load_compose(dict(PASSWORDS))
    dockerfiles = set()
    for name, svc in data["services"].items():
        if "build" in svc:
            context = REPO / svc["build"]["context"]
            dockerfile = context / svc["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
            dockerfiles.add((dockerfile, context))
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./deploy"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"
    assert {d.name for d, _ in dockerfiles} == {"agent.Dockerfile", "provider.Dockerfile"}
    dockerignore = (REPO / ".dockerignore").read_text().split()
    for dockerfile, context in dockerfiles:
        copied = 0
        for instruction, sources in _copy_sources(dockerfile):
            for src in sources:
                matches = glob.glob(str(context / src))
                assert matches, f"{dockerfile.name}: {instruction} {src} names nothing in the build context"
                top = Path(src).parts[0]
                assert top not in dockerignore, f"{dockerfile.name}: {src} is excluded by .dockerignore"
                copied += 1
        assert copied >= 4, f"{dockerfile.name} copies almost nothing: {copied}"


def _copy_sources(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(instruction, sources) of every COPY/ADD that copies from the build context."""
    text = dockerfile.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue  # from another stage or image, not the repo
        args = [a for a in args if not a.startswith("--")]
        out.append((words[0].upper(), args[:-1]))
    return out


def test_the_container_llama_stack_config_is_the_shipped_one_listening_on_all_interfaces():
    shipped = yaml.safe_load((REPO / "provider" / "trl_nats_provider" / "run.yaml").read_text())
    deployed = yaml.safe_load((REPO / "deploy" / "llama-stack" / "run.yaml").read_text())
    assert deployed["server"]["host"] == "0.0.0.0"
    deployed["server"]["host"] = shipped["server"]["host"]
    assert deployed == shipped


@pytest.mark.integration
async def test_the_shipped_nats_config_lets_role_users_run_a_two_node_gang(tmp_path, monkeypatch):
    """The role permissions (trl_nats/permissions.py, rendered into deploy/nats/nats-server.conf) cover
    gangs: agents form and run one through the gangs bucket, a viewer sees it, a provider cannot forge one."""
    import os
    import subprocess
    import sys

    for k, v in PASSWORDS.items():
        monkeypatch.setenv(k, v)
    # the shipped file, with JetStream's store in the test's dir (the launcher passes -sd, which
    # may not repeat the config's store_dir)
    text = NATS_CONF.read_text()
    assert 'store_dir: "./.state/nats-jetstream"' in text
    conf = tmp_path / "nats-server.conf"
    conf.write_text(text.replace('store_dir: "./.state/nats-jetstream"', ""))
    server = EmbeddedNats(tmp_path / "nats", config=str(conf)).start()
    agents: list[subprocess.Popen] = []
    try:
        env = dict(os.environ, TRL_NATS_SERVERS=server.url, TRL_NATS_USER="agent")
        env["TRL_NATS_PASSWORD"] = PASSWORDS["TRL_NATS_AGENT_PASSWORD"]
        for name in ("locked-a", "locked-b"):
            log = open(tmp_path / f"{name}.log", "wb")
            cmd = [sys.executable, "-m", "trl_nats_agent", "--state-dir", str(tmp_path / name), "--device", "cpu"]
            cmd += ["--slots", "1", "--agent-id", name, "--heartbeat", "1", "--recipe-override", NOOP]
            agents.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        provider = NatsSettings(servers=[server.url], user="provider", password=PASSWORDS["TRL_NATS_PROVIDER_PASSWORD"])
        viewer = NatsSettings(servers=[server.url], user="viewer", password=PASSWORDS["TRL_NATS_VIEWER_PASSWORD"])
        client = await _connect_once_agents_made_the_topology(provider)
        watcher = await Client.connect(viewer)
        try:
            for _ in range(600):
                if len(await client.list_agents()) == 2:
                    break
                await asyncio.sleep(0.2)
            ds = await client.upload_dataset([{"prompt": "p", "chosen": "a", "rejected": "b"}])
            spec = JobSpec(
                job_id="locked",
                model="unused",
                dataset=ds,
                resources=Resources(nodes=2, gpus_per_node=1),
                labels={"noop.steps": "20", "noop.step_s": "0.1"},
            )
            job = await client.submit(spec)
            seen_by_viewer = False
            for _ in range(3000):
                seen_by_viewer = seen_by_viewer or any(g.job_id == "locked" for g in await watcher.list_gangs())
                if (await job.status()).state.terminal:
                    break
                await asyncio.sleep(0.1)
            record = await job.wait(timeout=300)
            assert record.state is JobState.completed, record.error
            assert sorted(a.agent for a in record.allocation) == ["locked-a", "locked-b"]
            assert seen_by_viewer, "the viewer could not read the gang while it ran"
        finally:
            await watcher.close()
            await client.close()
        # each role is refused what belongs to another
        assert await _violations(server.url, "provider", "$KV.trl_gangs.forged"), "a provider could forge a gang"
        assert await _violations(server.url, "viewer", "$KV.trl_gangs.forged"), "a viewer could forge a gang"
        assert await _violations(server.url, "agent", "trl.jobs.submit.gang-g1any"), "an agent could submit jobs"
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            agent.wait(60)
        server.stop()


async def _connect_once_agents_made_the_topology(settings: NatsSettings) -> Client:
    """Only agents may create the streams and buckets: until one has, other roles cannot bind."""
    for _ in range(300):
        try:
            return await Client.connect(settings)
        except Exception:
            await asyncio.sleep(0.2)
    return await Client.connect(settings)


async def _violations(url: str, user: str, subject: str) -> list[str]:
    seen: list[str] = []

    async def on_error(exc: Exception) -> None:
        seen.append(str(exc))

    password = PASSWORDS[f"TRL_NATS_{user.upper()}_PASSWORD"]
    nc = await nats.connect(url, user=user, password=password, error_cb=on_error)
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return [s for s in seen if "Permissions Violation" in s or "permissions violation" in s.lower()]
