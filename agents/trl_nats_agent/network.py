"""Which address this node is reached at, and which interface carries it.

A multi-node job's ranks talk to each other directly (c10d rendezvous, gloo or NCCL
collectives), not through NATS, so each agent must know an address the other nodes can
reach. By default that is the local address of the route to the NATS server: whatever
network reaches NATS is taken to reach the other nodes too (``--advertise-addr``
overrides it). The interface holding that address is what GLOO_SOCKET_IFNAME and
NCCL_SOCKET_IFNAME must name, or gloo advertises the hostname's address, which is
loopback on many machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from urllib.parse import urlparse

SIOCGIFADDR = 0x8915


def route_source_addr(host: str, port: int = 4222) -> str:
    """The local IPv4 address the kernel would send from to reach ``host`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((socket.gethostbyname(host), port))
        return s.getsockname()[0]


def advertise_addr_for(server_url: str) -> str:
    """The address to advertise when NATS is at ``server_url`` (e.g. ``nats://10.0.0.1:4222``)."""
    parsed = urlparse(server_url if "://" in server_url else f"nats://{server_url}")
    return route_source_addr(parsed.hostname or "127.0.0.1", parsed.port or 4222)


def interface_of(addr: str) -> str | None:
    """The name of the interface holding IPv4 ``addr`` (``lo`` for loopback), or None."""
    if ipaddress.ip_address(addr).is_loopback:
        return "lo"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                if socket.inet_ntoa(raw[20:24]) == addr:
                    return name
    return None
