"""Two (or more) "nodes" on one machine: network namespaces on a private bridge, for multi-node tests.

Each namespace gets one veth named ``eth0`` with its own address on a /24 that the test
picks at random among those no route on this machine uses yet, loopback up, and no default
route (the resolver is unreachable from inside, and reverse lookups would stall). The root
namespace holds the bridge's ``.1`` address, where the test's nats-server listens. Names
carry the process id and a random tag so parallel runs never collide; ``close()`` removes
everything, and runs from a ``finally``.

Needs root and ``ip`` with netns support; :func:`available` says whether this machine allows it and
:func:`unavailable_reason` why not (a test's skip reason). :meth:`Namespaces.add` and :meth:`Namespaces.remove`
bring a "node" onto the bridge and take it off again during a test.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid


def unavailable_reason() -> str | None:
    """Why this machine cannot make network namespaces (a skip reason), or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root, as CI does)"
    if not shutil.which("ip"):
        return "network namespaces need the `ip` command (iproute2)"
    probe = f"tnprobe{uuid.uuid4().hex[:6]}"
    out = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return f"`ip netns add` fails here: {out.stderr.strip() or out.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def available() -> bool:
    return unavailable_reason() is None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _used_subnets() -> set[str]:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, timeout=30).stdout
    return {line.split()[0] for line in out.splitlines() if line and line[0].isdigit()}


class Namespaces:
    def __init__(self, count: int) -> None:
        self.tag = f"{os.getpid() % 100000:05d}{uuid.uuid4().hex[:3]}"
        self.bridge = f"tnb{self.tag}"
        used = _used_subnets()
        for _ in range(200):
            a, b = random.randint(201, 250), random.randint(0, 255)
            if f"10.{a}.{b}.0/24" not in used:
                break
        else:
            raise RuntimeError("no free 10.x.y.0/24 for the test bridge")
        self.prefix = f"10.{a}.{b}"
        self.host_addr = f"{self.prefix}.1"
        self.names: list[str] = []  # index i: namespace i (kept after remove(i), so indices stay valid)
        self.addrs: list[str] = []
        self._made_bridge = False
        self._made: list[str] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _ip("addr", "add", f"{self.host_addr}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for _ in range(count):
                self.add()
        except BaseException:
            self.close()
            raise

    def add(self) -> int:
        """One more namespace on the bridge, at the next address; its index."""
        i = len(self.names)
        if 11 + i > 254:
            raise RuntimeError("no address left on the test bridge")
        ns, addr = f"tn{self.tag}{i}", f"{self.prefix}.{11 + i}"
        self.names.append(ns)
        self.addrs.append(addr)
        _ip("netns", "add", ns)
        self._made.append(ns)
        host_end, ns_end = f"vh{self.tag}{i}", f"ve{self.tag}{i}"
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", host_end, "master", self.bridge)
        _ip("link", "set", host_end, "up")
        _ip("link", "set", ns_end, "netns", ns)
        _ip("-n", ns, "link", "set", ns_end, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return i

    def remove(self, index: int) -> None:
        """Delete namespace ``index`` (its veth pair and address with it): that "node" is gone from the network.
        Stop the processes inside first."""
        ns = self.names[index]
        if ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            self._made.remove(ns)

    def exists(self, index: int) -> bool:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        return any(line.split()[0] == self.names[index] for line in out.splitlines() if line.strip())

    def wrap(self, index: int, cmd: list[str], timeout_s: int) -> list[str]:
        """``cmd`` run inside namespace ``index``, killed after ``timeout_s`` whatever happens."""
        return ["ip", "netns", "exec", self.names[index], "timeout", "-k", "10", str(timeout_s), *cmd]

    def close(self) -> None:
        for ns in self._made:  # deleting a namespace deletes its veth pair too
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self._made = []
        if self._made_bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
            self._made_bridge = False
