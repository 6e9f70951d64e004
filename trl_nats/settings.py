"""Connection settings shared by every process (client, CLI, agent, provider).

One struct, filled from arguments or ``TRL_NATS_*`` environment variables,
and one ``connect()`` that turns it into a nats-py connection with auth, TLS
and reconnect behaviour set the same way everywhere.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import ssl
from typing import Any

import msgspec

from trl_nats.subjects import DEFAULT_PREFIX, Names

log = logging.getLogger("trl_nats")

ENV_PREFIX = "TRL_NATS_"


class NatsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    servers: list[str] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    prefix: str = DEFAULT_PREFIX
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: str | None = None  # path to an nkey seed file
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    name: str | None = None
    # JetStream object replication; 1 for a single server, 3 for a cluster
    replicas: int = 1
    events_max_age_s: float = 30 * 24 * 3600.0
    # An agent's heartbeat expires after this. It must outlast a cluster election (about 5 s here,
    # docs/faults.md) plus a heartbeat interval plus noticing a frozen server (ping_interval_s x 2)
    agent_ttl_s: float = 15.0
    # How often the client pings its server: a frozen (SIGSTOPped, partitioned) server keeps its TCP
    # socket open, so only unanswered pings (2 in a row) make the client move to another node
    ping_interval_s: float = 3.0
    # How long a client's write (submit, cancel, upload) retries through an election before it fails
    # saying what was not written (trl_nats/retry.py); agents keep their own, longer, patience
    write_retry_s: float = 60.0
    # a claimed job's message is redelivered this long after its agent stops keeping it alive
    ack_wait_s: float = 30.0
    # JetStream's safety net on redeliveries (the job's max_attempts decides retries); then an advisory
    max_deliver: int = 50

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @classmethod
    def from_env(cls, **overrides: Any) -> NatsSettings:
        """Settings from TRL_NATS_* variables (TRL_NATS_SERVERS is comma separated), then ``overrides``."""
        values: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            values[name] = raw.split(",") if name == "servers" else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return msgspec.convert(values, cls, strict=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert or any(s.startswith("tls://") for s in self.servers)):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


async def connect(settings: NatsSettings, *, name: str | None = None, **extra: Any):
    """Connect with the shared options. Reconnects forever: a broker restart is routine."""
    import nats

    violations: collections.deque[str] = collections.deque(maxlen=20)

    errors: collections.deque[Exception] = collections.deque(maxlen=5)

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        text = str(exc)
        if "permissions violation" in text.lower() or "authorization violation" in text.lower():
            violations.append(text)
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        log.info("nats: disconnected, reconnecting")

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    opts: dict[str, Any] = dict(
        servers=settings.servers,
        name=name or settings.name,
        connect_timeout=settings.connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        ping_interval=settings.ping_interval_s,
        max_outstanding_pings=2,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        allow_reconnect=True,
    )
    if settings.user:
        opts["user"] = settings.user
        opts["password"] = settings.password
    if settings.token:
        opts["token"] = settings.token
    if settings.nkey_seed:
        opts["nkeys_seed"] = settings.nkey_seed
    if settings.creds_file:
        opts["user_credentials"] = settings.creds_file
    ctx = settings.ssl_context()
    if ctx is not None:
        opts["tls"] = ctx
    opts.update(extra)
    nc = nats.NATS()
    nc.trl_violations = violations  # what the server refused this connection: see permission_denied()
    try:
        # nats-py retries the first connect as long as reconnects (forever here): bound it
        await asyncio.wait_for(nc.connect(**opts), settings.connect_timeout * 2 + 1)
        return nc
    except (Exception, TimeoutError) as exc:  # nats-py raises several unrelated types here
        with contextlib.suppress(Exception):
            await nc.close()
        refused = next((v for v in reversed(violations) if "authorization" in v.lower()), None)
        if refused or "authorization violation" in str(exc).lower():
            raise ConnectionError(
                f"NATS at {', '.join(settings.servers)} refused the credentials ({refused or exc}): check the "
                "user and password, token, nkey seed or creds file (TRL_NATS_USER, TRL_NATS_PASSWORD, ...)"
            ) from exc
        tls_error = next((e for e in [exc, *errors] if isinstance(e, ssl.SSLError)), None)
        if tls_error is not None:
            exc = tls_error
            raise ConnectionError(
                f"cannot connect to NATS at {', '.join(settings.servers)}: TLS failed ({exc}). Give the CA that "
                "signed the server's certificate (--tls-ca), and a client certificate (--tls-cert/--tls-key) if "
                "the server asks for one"
            ) from exc
        reason = str(exc) or (
            "no answer within the connect timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        )
        raise ConnectionError(
            f"cannot connect to NATS at {', '.join(settings.servers)}: {reason}. "
            "Check that nats-server is running (trl-nats up starts one) and the credentials."
        ) from exc


class PermissionDenied(PermissionError):
    """The server refused an operation to this credential's role."""


def permission_denied(nc, what: str, since: int = 0) -> PermissionDenied | None:
    """A PermissionDenied naming what the server refused on ``nc`` after its ``since``-th violation, if any."""
    violations = list(getattr(nc, "trl_violations", ()))[since:]
    if not violations:
        return None
    return PermissionDenied(
        f"NATS refused to {what}: {violations[-1]}. This credential's role does not allow it "
        "(see docs/security.md for what each role may do)"
    )


def add_connection_args(parser) -> None:
    """The NATS connection flags every command shares (each falls back to its TRL_NATS_* variable)."""
    g = parser.add_argument_group("NATS connection (defaults from TRL_NATS_* environment variables)")
    g.add_argument("--servers", help="comma-separated NATS URLs (TRL_NATS_SERVERS)")
    g.add_argument("--prefix", help="subject prefix shared by one deployment (TRL_NATS_PREFIX, default trl)")
    g.add_argument("--user", help="user name (TRL_NATS_USER)")
    g.add_argument("--password", help="password (TRL_NATS_PASSWORD)")
    g.add_argument("--token", help="auth token (TRL_NATS_TOKEN)")
    g.add_argument("--nkey-seed", dest="nkey_seed", help="path to an nkey seed file (TRL_NATS_NKEY_SEED)")
    g.add_argument("--creds", dest="creds_file", help="path to a .creds file (TRL_NATS_CREDS_FILE)")
    g.add_argument("--tls-ca", dest="tls_ca", help="CA bundle to verify the server (TRL_NATS_TLS_CA)")
    g.add_argument("--tls-cert", dest="tls_cert", help="client certificate for mutual TLS (TRL_NATS_TLS_CERT)")
    g.add_argument("--tls-key", dest="tls_key", help="client key for mutual TLS (TRL_NATS_TLS_KEY)")


def settings_from_args(args, **extra: Any) -> NatsSettings:
    keys = ("prefix", "user", "password", "token", "nkey_seed", "creds_file", "tls_ca", "tls_cert", "tls_key")
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k in keys}
    if getattr(args, "servers", None):
        overrides["servers"] = args.servers.split(",")
    overrides.update(extra)
    return NatsSettings.from_env(**overrides)
