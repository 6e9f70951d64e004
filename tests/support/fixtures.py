"""The shared fixtures (``tests/conftest.py`` registers them): a real nats-server per test, its
settings, a child-process environment that reaches it, agents, and one tiny model per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.models import build_tiny_model
from support.paths import SHIPPED
from support.processes import AgentProcess, child_env
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings


@pytest.fixture
def nats_server(tmp_path: Path):
    """A real nats-server with JetStream (file storage) on a random port."""
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
        return child_env(settings, **extra)

    return make


@pytest.fixture
def start_agent(env_for, tmp_path: Path):
    """Start real agents (CPU slots) against the test's nats-server; all are stopped at the end."""
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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny Llama and tokenizer built from the shipped preference data, once per test run."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny", SHIPPED)
