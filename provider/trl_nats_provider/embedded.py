"""The embedded default on one machine: nats-server, one node agent, Llama Stack with this provider.

Used by the demo (``python -m trl_nats_provider.demo``) and the integration
tests, so both exercise the same processes a deployment runs. Every part is
a child process in its own session: a Ctrl-C in the terminal reaches only
the parent, which then stops them in order (Llama Stack, agent, nats-server).

Nothing here imports torch: the agent and the tiny-model builder run as
``python -m trl_nats_agent`` / ``python -m trl_nats_agent.testing.tiny``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

from trl_nats.local_agent import OFFLINE, agent_command
from trl_nats.ports import free_port
from trl_nats.server import EmbeddedNats
from trl_nats_provider.stack import LlamaStackServer, write_run_config

REPO = Path(__file__).resolve().parent.parent.parent


class AgentProcess:
    """``python -m trl_nats_agent`` as a child process."""

    def __init__(
        self,
        state_dir: Path,
        env: dict[str, str],
        *,
        device: str = "cpu",
        slots: int = 2,
        agent_id: str = "agent-1",
        log_level: str = "INFO",
        extra_args: list[str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.env = env
        self.agent_id = agent_id
        self.log_path = state_dir.parent / f"{agent_id}.log"
        self.cmd = agent_command(
            state_dir, device, slots, OFFLINE, "--agent-id", agent_id, "--log-level", log_level, *(extra_args or [])
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (the agent stops its torchrun jobs and hands them back), SIGKILL after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def build_tiny_model(out_dir: Path, dataset: Path | None = None, timeout: float = 600.0) -> Path:
    """A tiny Llama-style model + tokenizer (``python -m trl_nats_agent.testing.tiny``), reused when present."""
    if (out_dir / "config.json").exists():
        return out_dir
    cmd = [sys.executable, "-m", "trl_nats_agent.testing.tiny", str(out_dir)]
    if dataset is not None:
        cmd += ["--dataset", str(dataset)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"building the tiny model failed ({' '.join(cmd)}): {done.stderr.strip()[-2000:]}\n"
            "Install the agent package (pip install ./agents) on this machine for the embedded demo."
        )
    return out_dir


def shipped_dataset(name: str) -> Path:
    """A dataset shipped with trl-nats (``preferences.jsonl``, ``sft.jsonl``)."""
    import trl_nats

    path = Path(trl_nats.__file__).parent / "data" / name
    if not path.exists():
        raise FileNotFoundError(f"shipped dataset {path} is missing: reinstall trl-nats")
    return path


class EmbeddedStack:
    """nats-server + agent + ``llama stack run``, all state under ``state_dir``."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        device: str = "cpu",
        slots: int = 2,
        gpus_per_node: int = 1,
        port: int = 0,
        declare: Literal["module", "providers_dir"] = "module",
        agent_log_level: str = "INFO",
        agent_args: list[str] | None = None,
        stack: str = "llama-stack-0.6",
        stack_bin: str | os.PathLike[str] | None = None,
    ) -> None:
        """``stack`` picks the host (see :data:`trl_nats_provider.stack.HOSTS`); ``stack_bin`` is the
        bin/ of the venv that has it (None: this interpreter's, i.e. llama-stack 0.6.1). OGX serves
        plain HTTP here (``--insecure``): everything is on loopback."""
        self.stack = stack
        self.stack_bin = stack_bin
        self.state_dir = Path(state_dir).resolve()
        self.device = device
        self.slots = slots
        self.gpus_per_node = gpus_per_node
        self.port = port
        self.declare = declare
        self.agent_log_level = agent_log_level
        self.agent_args = agent_args
        self.nats: EmbeddedNats | None = None
        self.agent: AgentProcess | None = None
        self.server: LlamaStackServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "Llama Stack is not running"
        return self.server.url

    @property
    def nats_url(self) -> str:
        assert self.nats is not None, "nats-server is not running"
        return self.nats.url

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TRL_NATS_SERVERS"] = self.nats_url
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, *, with_agent: bool = True) -> EmbeddedStack:
        try:
            self.start_nats()
            if with_agent:
                self.start_agent()
            self.start_llama_stack()
        except BaseException:
            self.stop()
            raise
        return self

    def start_nats(self) -> EmbeddedNats:
        self.nats = EmbeddedNats(self.state_dir / "nats").start()
        return self.nats

    def start_agent(self) -> AgentProcess:
        if self.agent is not None and self.agent.running:
            return self.agent
        self.agent = AgentProcess(
            self.state_dir / "agent",
            self.env(),
            device=self.device,
            slots=self.slots,
            log_level=self.agent_log_level,
            extra_args=self.agent_args,
        ).start()
        return self.agent

    def run_config_path(self, declare: str) -> Path:
        return self.state_dir / "stack" / f"run-{declare}.yaml"

    def start_llama_stack(self, declare: Literal["module", "providers_dir"] | None = None) -> LlamaStackServer:
        declare = declare or self.declare
        if not self.port:
            self.port = free_port()
        config = write_run_config(
            self.run_config_path(declare),
            stack_dir=self.state_dir / "stack",
            port=self.port,
            provider_config={"servers": self.nats_url, "gpus_per_node": self.gpus_per_node},
            declare=declare,
            providers_dir=REPO / "providers.d" if declare == "providers_dir" else None,
            stack=self.stack,
            external_apis_dir=REPO / "providers.d" / "apis",
            tls=False,
        )
        self.server = LlamaStackServer(
            config,
            port=self.port,
            log_path=self.state_dir / "stack" / "llama-stack.log",
            env=self.env(),
            stack=self.stack,
            bin_dir=self.stack_bin,
            insecure=self.stack == "ogx",
        ).start()
        return self.server

    def restart_llama_stack(self, declare: Literal["module", "providers_dir"] | None = None) -> LlamaStackServer:
        if self.server is not None:
            self.server.stop()
        return self.start_llama_stack(declare)

    def stop(self) -> None:
        errors: list[BaseException] = []
        for part in (self.server, self.agent, self.nats):
            if part is None:
                continue
            try:
                part.stop()
            except BaseException as exc:  # keep stopping the rest; re-raise the first at the end
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
