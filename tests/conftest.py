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
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    return make
