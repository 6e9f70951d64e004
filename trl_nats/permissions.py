"""Least-privilege NATS permissions for each role, and the nats-server config that grants them.

Three roles (docs/security.md explains each line):

- ``provider``: the Llama Stack provider, or a CLI user who may submit: upload datasets, create
  job records, queue jobs, cancel them, read state and follow events;
- ``agent``: a node agent: claim from the pool consumers and settle them, write job state and
  heartbeats, publish events, fetch datasets, store and fetch checkpoints, handle max-deliveries
  advisories; it also creates the JetStream objects on first start. It cannot submit;
- ``viewer``: read state and follow events; it cannot submit, cancel or write anything.

Subjects derive from :class:`~trl_nats.subjects.Names`, so a deployment with another prefix
gets the same roles. ``python -m trl_nats.permissions > nats-server.conf`` prints the config
with passwords taken from the environment (``deploy/nats/nats-server.conf`` is that output).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from trl_nats.subjects import Names

ROLES = ("provider", "agent", "viewer")


def _obj(names: Names, bucket: str) -> str:
    return f"OBJ_{bucket}"


def role_permissions(names: Names) -> dict[str, dict[str, list[str]]]:
    p = names.prefix
    jobs, events = names.jobs_stream, names.events_stream
    kv_jobs, kv_agents = f"KV_{names.jobs_bucket}", f"KV_{names.agents_bucket}"
    kv_gangs = f"KV_{names.gangs_bucket}"
    datasets, artifacts = _obj(names, names.datasets_store), _obj(names, names.artifacts_store)
    api = "$JS.API"

    def msg_get(stream: str) -> list[str]:
        return [f"{api}.STREAM.MSG.GET.{stream}", f"{api}.DIRECT.GET.{stream}", f"{api}.DIRECT.GET.{stream}.>"]

    def ordered_reader(stream: str) -> list[str]:  # kv.keys(), object gets, event replays
        return [
            f"{api}.CONSUMER.CREATE.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}.>",
            f"{api}.CONSUMER.INFO.{stream}.*",
            f"{api}.CONSUMER.DELETE.{stream}.>",
        ]

    bind = [f"{api}.INFO", f"{api}.STREAM.NAMES"] + [
        f"{api}.STREAM.INFO.{s}" for s in (jobs, events, kv_jobs, kv_agents, kv_gangs, datasets, artifacts)
    ]
    read_state = [
        *(sub for kv in (kv_jobs, kv_agents, kv_gangs) for sub in msg_get(kv)),
        *(sub for kv in (kv_jobs, kv_agents, kv_gangs) for sub in ordered_reader(kv)),
    ]
    read_events = ordered_reader(events)
    base_sub = ["_INBOX.>"]

    provider_pub = [
        *bind,
        *read_state,
        *read_events,
        f"{p}.jobs.submit.>",  # queue a job
        f"$KV.{names.jobs_bucket}.>",  # create a job record; set cancel_requested
        f"{p}.events.*.status",  # the "submitted" and "cancelled" status events
        f"{p}.control.*",  # tell the owning agent to cancel now
        f"$O.{names.datasets_store}.>",  # upload a dataset (chunks and meta)
        *msg_get(datasets),
        f"{api}.STREAM.PURGE.{datasets}",
        *msg_get(artifacts),
        *ordered_reader(artifacts),  # pull a job's model or checkpoints (trl_nats/artifacts)
    ]
    agent_pub = [
        *bind,
        *read_state,
        *(f"{api}.STREAM.{op}.{s}" for s in (jobs, events) for op in ("CREATE", "UPDATE")),
        *(f"{api}.STREAM.CREATE.{s}" for s in (kv_jobs, kv_agents, kv_gangs, datasets, artifacts)),
        # pool consumers (a wildcard is a whole token, so "any consumer of the jobs stream")
        f"{api}.CONSUMER.CREATE.{jobs}.*",
        f"{api}.CONSUMER.CREATE.{jobs}.*.>",
        f"{api}.CONSUMER.DURABLE.CREATE.{jobs}.*",
        f"{api}.CONSUMER.INFO.{jobs}.*",
        f"{api}.CONSUMER.MSG.NEXT.{jobs}.*",  # fetch one job
        f"$JS.ACK.{jobs}.>",  # ack, nak, in_progress, term
        f"{api}.CONSUMER.LIST.{jobs}",  # the max-deliveries sweep
        f"{api}.STREAM.MSG.GET.{jobs}",
        f"{api}.STREAM.MSG.DELETE.{jobs}",
        f"$KV.{names.jobs_bucket}.>",  # state transitions (compare-and-set)
        f"$KV.{names.agents_bucket}.>",  # heartbeats
        f"$KV.{names.gangs_bucket}.>",  # multi-node gangs: form, join, run, stop (compare-and-set)
        f"{p}.events.>",  # status, metrics, checkpoint and log events
        *msg_get(datasets),
        *ordered_reader(datasets),
        f"$O.{names.artifacts_store}.>",  # checkpoints (--checkpoint-store nats)
        *msg_get(artifacts),
        *ordered_reader(artifacts),
        f"{api}.STREAM.PURGE.{artifacts}",
    ]
    return {
        "provider": {"publish": provider_pub, "subscribe": [*base_sub, f"{p}.events.>"]},
        "agent": {
            "publish": agent_pub,
            "subscribe": [*base_sub, f"{p}.control.*", f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{jobs}.*"],
        },
        "viewer": {
            "publish": [*bind, *read_state, *read_events, *msg_get(artifacts), *ordered_reader(artifacts)],
            "subscribe": [*base_sub, f"{p}.events.>"],
        },
    }


def jwt_permissions(names: Names, role: str) -> dict[str, dict[str, list[str]]]:
    """``role``'s permissions in the shape of a NATS user JWT's claims (``nats.pub`` / ``nats.sub``), for
    operator mode: the same least privilege as :func:`server_config` grants, signed into each user's creds."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    perms = role_permissions(names)[role]
    return {"pub": {"allow": list(perms["publish"])}, "sub": {"allow": list(perms["subscribe"])}}


def _q(value: str) -> str:
    return json.dumps(value)


def server_config(
    names: Names,
    users: list[dict[str, Any]],
    *,
    store_dir: str | None = None,
    tls: dict[str, str] | None = None,
) -> str:
    """A nats-server config granting each user its role. A user is ``{"role", "user", "password"}`` or
    ``{"role", "nkey"}``; a password (or any value) starting with ``$`` is read from the environment."""
    perms = role_permissions(names)
    lines = [
        "# nats-server config for trl-nats: least-privilege roles (generated by python -m trl_nats.permissions)",
        f"# subject prefix {names.prefix!r}; docs/security.md explains every permission",
        "",
        "jetstream {" + (f" store_dir: {_q(store_dir)} " if store_dir else "") + "}",
        "",
    ]
    used = {u["role"] for u in users}
    for role in (r for r in ROLES if r in used):  # nats-server refuses a variable nobody uses
        pub = ",\n      ".join(_q(s) for s in perms[role]["publish"])
        sub = ",\n      ".join(_q(s) for s in perms[role]["subscribe"])
        lines += [
            f"{role.upper()}_PERMISSIONS = {{",
            f"  publish: {{ allow: [\n      {pub}\n  ] }}",
            f"  subscribe: {{ allow: [\n      {sub}\n  ] }}",
            "}",
            "",
        ]
    entries = []
    for u in users:
        if u["role"] not in ROLES:
            raise ValueError(f"unknown role {u['role']!r}: use one of {', '.join(ROLES)}")
        who = f"nkey: {_q(u['nkey'])}" if "nkey" in u else f"user: {_q(u['user'])}, password: {_value(u['password'])}"
        entries.append(f"    {{ {who}, permissions: ${u['role'].upper()}_PERMISSIONS }}")
    lines += ["authorization {", "  users: [", *entries, "  ]", "}"]
    if tls:
        lines += [
            "",
            "tls {",
            *(f"  {k}: {_q(v) if isinstance(v, str) else str(v).lower()}" for k, v in tls.items()),
            "}",
        ]
    return "\n".join(lines) + "\n"


def _value(v: str) -> str:
    return v if v.startswith("$") else _q(v)


def main() -> None:
    names = Names(sys.argv[1] if len(sys.argv) > 1 else "trl")
    users = [
        {"role": "provider", "user": "provider", "password": "$TRL_NATS_PROVIDER_PASSWORD"},
        {"role": "agent", "user": "agent", "password": "$TRL_NATS_AGENT_PASSWORD"},
        {"role": "viewer", "user": "viewer", "password": "$TRL_NATS_VIEWER_PASSWORD"},
    ]
    sys.stdout.write(server_config(names, users, store_dir="./.state/nats-jetstream"))


if __name__ == "__main__":
    main()
