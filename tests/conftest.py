"""Shared fixtures: a real nats-server per test (JetStream, file storage, random port)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@pytest.fixture
def nats_server(tmp_path: Path):
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(nats_server: EmbeddedNats) -> NatsSettings:
    return NatsSettings(servers=[nats_server.url], agent_ttl_s=5.0)


@pytest.fixture
def env_for(settings: NatsSettings):
    """Environment for a child process (agent, CLI) that talks to the test's nats-server."""

    def make(**extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["TRL_NATS_SERVERS"] = ",".join(settings.servers)
        env["TRL_NATS_PREFIX"] = settings.prefix
        env["TRL_NATS_AGENT_TTL_S"] = str(settings.agent_ttl_s)
        env["TRL_NATS_ACK_WAIT_S"] = str(settings.ack_wait_s)
        env["TRL_NATS_MAX_DELIVER"] = str(settings.max_deliver)
        env["TRL_NATS_REPLICAS"] = str(settings.replicas)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    return make


def processes_matching(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle`` (read from /proc, no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


class AgentProcess:
    """A real ``trl-nats-agent`` child process."""

    def __init__(self, env: dict[str, str], state_dir: Path, *, slots: int, agent_id: str, extra: list[str]) -> None:
        import subprocess

        self.state_dir = state_dir
        self.agent_id = agent_id
        self.log_path = state_dir.parent / f"{agent_id}.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            PYTHON,
            "-m",
            "trl_nats_agent",
            "--state-dir",
            str(state_dir),
            "--device",
            "cpu",
            "--slots",
            str(slots),
            "--agent-id",
            agent_id,
            "--heartbeat",
            "1",
            "--cancel-grace",
            "5",
            *extra,
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = None) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_agent(env_for, tmp_path: Path):
    agents: list[AgentProcess] = []

    def start(agent_id: str = "agent-a", slots: int = 2, recipe: str | None = None, extra: list[str] | None = None):
        args = list(extra or [])
        if recipe:
            args += ["--recipe-override", recipe]
        a = AgentProcess(env_for(), tmp_path / agent_id, slots=slots, agent_id=agent_id, extra=args)
        agents.append(a)
        return a

    yield start
    for a in agents:
        a.stop()


NOOP = "trl_nats_agent.recipes.noop"


SHIPPED_PREFERENCES = REPO / "trl_nats" / "data" / "preferences.jsonl"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny Llama and tokenizer built from the shipped preference data, once per test run."""
    import subprocess

    out = tmp_path_factory.mktemp("model") / "tiny"
    subprocess.run(
        [PYTHON, "-m", "trl_nats_agent.tiny", str(out), "--dataset", str(SHIPPED_PREFERENCES)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


async def wait_for(predicate, what: str, timeout: float = 180.0, every: float = 0.2):
    """Poll an async predicate until it returns something truthy (a hang guard, not a speed limit)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


async def agents_up(client, n: int) -> bool:
    return len(await client.list_agents()) >= n
