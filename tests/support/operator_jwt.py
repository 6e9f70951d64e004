"""A NATS operator, account and users made here: nkeys key pairs and JWT v2 claims signed with ed25519.

What ``nsc`` would make for a deployment in operator mode, written out so a test needs no tool
from outside: an operator JWT, an account JWT with JetStream enabled, and one ``.creds`` file
per role whose user JWT carries that role's permissions (rendered by ``trl_nats.permissions``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import nkeys

from trl_nats.permissions import ROLES, jwt_permissions
from trl_nats.subjects import Names

UNLIMITED = -1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix: int) -> nkeys.KeyPair:
    import os

    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def _public(kp: nkeys.KeyPair) -> str:
    return kp.public_key.decode()


def sign_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict) -> str:
    """A JWT v2 (``alg: ed25519-nkey``) with ``nats`` claims about ``subject``, signed by ``issuer``."""
    claims = {"iat": int(time.time()), "iss": _public(issuer), "name": name, "sub": subject, "nats": nats}
    # jti: an id for the claims, a hash of them (as the Go jwt library makes it)
    digest = hashlib.sha512(json.dumps(claims, sort_keys=True).encode()).digest()[:32]
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


def creds(user_jwt: str, seed: bytes) -> str:
    return (
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def operator_setup(out: Path, names: Names, roles: tuple[str, ...] = ROLES) -> tuple[Path, dict[str, Path]]:
    """Write a server config fragment (operator, account resolver) and ``<role>.creds`` files into ``out``.

    Returns the config path (append JetStream and listen settings, or pass it with ``-c``) and the
    creds file of each role.
    """
    out.mkdir(parents=True, exist_ok=True)
    operator = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    system = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    op_jwt = sign_jwt(
        operator, _public(operator), "trl-test-operator",
        {"type": "operator", "version": 2, "system_account": _public(system)},
    )  # fmt: skip
    limits = {
        "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED, "imports": UNLIMITED,
        "exports": UNLIMITED, "wildcards": True, "conn": UNLIMITED, "leaf": UNLIMITED,
        "mem_storage": UNLIMITED, "disk_storage": UNLIMITED, "streams": UNLIMITED, "consumer": UNLIMITED,
    }  # fmt: skip
    acct_jwt = sign_jwt(operator, _public(account), "trl", {"type": "account", "version": 2, "limits": limits})
    sys_limits = {k: v for k, v in limits.items() if k not in ("mem_storage", "disk_storage", "streams", "consumer")}
    sys_jwt = sign_jwt(operator, _public(system), "SYS", {"type": "account", "version": 2, "limits": sys_limits})
    files: dict[str, Path] = {}
    for role in roles:
        user = _keypair(nkeys.PREFIX_BYTE_USER)
        nats = {
            **jwt_permissions(names, role),
            "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED,
            "type": "user", "version": 2,
        }  # fmt: skip
        user_jwt = sign_jwt(account, _public(user), f"trl-{role}", nats)
        files[role] = out / f"{role}.creds"
        files[role].write_text(creds(user_jwt, user.seed))
        files[role].chmod(0o600)
    conf = out / "operator.conf"
    conf.write_text(
        # a user JWT carries its permissions and travels in CONNECT: the agent's is larger than 4 KiB
        "max_control_line: 65536\n"
        f"operator: {op_jwt}\n"
        f"system_account: {_public(system)}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{\n  {_public(account)}: {acct_jwt}\n  {_public(system)}: {sys_jwt}\n}}\n"
    )
    return conf, files
