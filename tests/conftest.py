"""Registers the shared fixtures; the helpers themselves live in ``tests/support`` (import them from there)."""

from support.fixtures import env_for, nats_server, settings, start_agent, tiny_model

__all__ = ["env_for", "nats_server", "settings", "start_agent", "tiny_model"]
