"""A nats-server and real agents as separate processes, each agent on its own "node": a network namespace
on a private bridge (``tests/netns.py``) where the machine allows, else loopback.

Every agent has its own state dir (``<tmp>/<agent id>``) and reaches the nats-server only at the
bridge address when it runs in a namespace. The ranks of every agent run one OpenMP thread, so two
runs of the same job do the same float arithmetic whichever agents run it. Each process is wrapped in
an outer timeout: failures across namespaces look like hangs.
"""

from __future__ import annotations

from pathlib import Path

from netns import Namespaces

from support.processes import AgentProcess, agents_json, child_env
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings

PROCESS_LIMIT_S = 900  # outer kill for every agent


class Fleet:
    """``namespaces``: how many namespaced nodes to make up front (0: agents share loopback)."""

    def __init__(self, tmp_path: Path, namespaces: int = 0, *, gang_timeout_s: int = 120) -> None:
        self.tmp = tmp_path
        self.gang_timeout_s = gang_timeout_s
        self.ns = Namespaces(namespaces) if namespaces else None
        self.server: EmbeddedNats | None = None
        self.agents: dict[str, AgentProcess] = {}
        self._all: list[AgentProcess] = []
        try:
            host = self.ns.host_addr if self.ns else "127.0.0.1"
            self.server = EmbeddedNats(tmp_path / "nats", host=host).start()
        except BaseException:
            self.close()
            raise
        self.settings = NatsSettings(servers=[self.server.url], agent_ttl_s=5.0)

    def env(self, **extra: str) -> dict[str, str]:
        """For a child process in the root namespace (the CLI): it reaches the server as the agents do."""
        return child_env(self.settings, **extra)

    def start_agent(self, agent_id: str, slots: int, node: int | None = None) -> AgentProcess:
        """An agent with ``slots`` CPU slots, in namespace ``node`` (None, or no namespaces: on loopback)."""
        state = self.tmp / agent_id
        extra = ["--node", agent_id, "--gang-timeout", str(self.gang_timeout_s)]
        if node is not None and self.ns:
            ns = self.ns

            def wrap(cmd: list[str]) -> list[str]:
                return ns.wrap(node, cmd, PROCESS_LIMIT_S)
        else:

            def wrap(cmd: list[str]) -> list[str]:
                return ["timeout", "-k", "10", str(PROCESS_LIMIT_S), *cmd]

        env = self.env(OMP_NUM_THREADS="1")  # the same threads per rank in every run: the same float arithmetic
        agent = AgentProcess(env, state, slots=slots, agent_id=agent_id, extra=extra, wrap=wrap)
        self.agents[agent_id] = agent
        self._all.append(agent)
        return agent

    def stop_agent(self, agent_id: str) -> int:
        return self.agents.pop(agent_id).stop()

    def agents_json(self) -> list[dict]:
        return agents_json(self.env())

    def logs(self) -> list[str]:
        return [p.read_text(errors="replace") for p in self.tmp.glob("*.log")]

    def close(self) -> None:
        for agent in self._all:
            if agent.proc.poll() is None:
                agent.proc.terminate()
        for agent in self._all:
            agent.stop()  # waits (kills after 60 s) and closes its log
        if self.server:
            self.server.stop()
        if self.ns:
            self.ns.close()
