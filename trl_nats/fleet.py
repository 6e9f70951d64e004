"""The fleet check: can any agent that is up ever run a job of this shape?

Lives here: which agents could host a job's nodes, and the reason a job cannot be scheduled.
Does not live here: reading the heartbeats (``Client.list_agents``), routing (``Resources.queue``).
"""

from __future__ import annotations

from trl_nats.messages import AgentRecord, Resources

FLEET_CACHE_S = 2.0  # how stale the fleet may be when checking that a new job fits some agent


class Unschedulable(ValueError):
    """No agent in the fleet could ever run the job as asked; ``str()`` says what the fleet has."""


def hosts_for(resources: Resources, agents: list[AgentRecord]) -> list[AgentRecord]:
    """The agents that could host one node of a job needing ``resources`` (when idle).

    An agent advertises every single-node pool it serves; serving the job's node pool means
    enough GPUs of the right type, so routing and this check can never disagree.
    """
    return [a for a in agents if resources.node_pool in a.pools]


def unschedulable_reason(resources: Resources, agents: list[AgentRecord]) -> str | None:
    """Why no agent in ``agents`` could ever run the job, or None if some could (or none is up to ask)."""
    if not agents:
        return None
    hosts = hosts_for(resources, agents)
    if len(hosts) >= resources.nodes:
        return None
    gtype = resources.gpu_type or "any type"
    need = f"{resources.nodes} node(s) with {resources.gpus_per_node} GPU(s) of {gtype} each"
    fleet = ", ".join(f"{a.agent_id} ({len(a.gpus)}x {a.gpus[0].name if a.gpus else '-'})" for a in agents[:8]) + (
        f" and {len(agents) - 8} more" if len(agents) > 8 else ""
    )
    return (
        f"no agent in the fleet can run this job: it needs {need} (pool {resources.pool}), "
        f"and only {len(hosts)} of the {len(agents)} agent(s) up could host one node: {fleet}. "
        "Ask for fewer GPUs per node or fewer nodes, or start agents that fit."
    )
