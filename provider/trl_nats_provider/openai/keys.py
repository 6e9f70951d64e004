"""API keys: each bearer key names a namespace, and a key sees only the files and jobs of its own.

Keys come from a file (``--api-keys-file``: one key a line, ``name:key`` to name its namespace, ``#``
comments) and from ``TRL_NATS_OPENAI_API_KEYS`` (the same entries, comma separated). A key without a
name gets the namespace ``key-<first 12 hex of its sha256>``, so the key itself is never stored.

With no key configured the gateway serves loopback callers only, all in the namespace ``local``,
whatever bearer token they send (the SDK insists on one).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from trl_nats_provider.openai.errors import APIError, unauthorized

ENV = "TRL_NATS_OPENAI_API_KEYS"
LOCAL_NAMESPACE = "local"
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class KeyConfigError(ValueError):
    """The key file or variable cannot be used; ``str()`` says which entry and why."""


def _entries(text: str, where: str, sep: str) -> list[tuple[str, str]]:
    out = []
    for n, raw in enumerate(text.split(sep), 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, colon, key = entry.partition(":")
        if not colon:
            name, key = "key-" + hashlib.sha256(entry.encode()).hexdigest()[:12], entry
        name, key = name.strip(), key.strip()
        if not NAMESPACE_RE.match(name):
            raise KeyConfigError(f"{where} entry {n}: namespace {name!r} must be 1-64 letters, digits, '-' or '_'")
        if len(key) < 8:
            raise KeyConfigError(f"{where} entry {n}: the key is shorter than 8 characters; use a long random key")
        out.append((name, key))
    return out


@dataclass
class KeyRing:
    keys: dict[str, str] = field(default_factory=dict)  # key -> namespace

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, env: str | None = None) -> KeyRing:
        entries: list[tuple[str, str]] = []
        if path:
            p = Path(path)
            if not p.is_file():
                raise KeyConfigError(f"API key file {p} does not exist")
            entries += _entries(p.read_text(), str(p), "\n")
        env = os.environ.get(ENV) if env is None else env
        if env:
            entries += _entries(env, ENV, ",")
        ring = cls()
        for name, key in entries:
            if ring.keys.get(key, name) != name:
                raise KeyConfigError(f"one key is given for two namespaces ({ring.keys[key]!r} and {name!r})")
            ring.keys[key] = name
        return ring

    @property
    def open(self) -> bool:
        """No key configured: loopback only."""
        return not self.keys

    def namespace(self, authorization: str | None, client_host: str | None) -> str:
        """The caller's namespace, or the APIError to answer with."""
        if self.open:
            if not is_loopback(client_host):
                raise APIError(
                    403,
                    "This server has no API keys configured, so it serves only this machine (loopback): "
                    "configure keys (--api-keys-file or TRL_NATS_OPENAI_API_KEYS) to serve other hosts.",
                    type="permission_error",
                    code="loopback_only",
                )
            return LOCAL_NAMESPACE
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized(
                "You didn't provide an API key: send it as 'Authorization: Bearer <key>' "
                "(the openai SDK's api_key, or OPENAI_API_KEY)."
            )
        token = token.strip()
        for key, name in self.keys.items():
            if hmac.compare_digest(key.encode(), token.encode()):
                return name
        shown = token[:3] + "..." + token[-4:] if len(token) > 10 else "***"
        raise unauthorized(f"Incorrect API key provided: {shown}. Use a key from this server's API key file.")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
