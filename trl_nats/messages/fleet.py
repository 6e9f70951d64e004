"""The fleet: agents' heartbeats and multi-node gangs."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from trl_nats.messages.codec import SCHEMA, JobId, NonNegInt, PosInt, Schema, now


class GpuInfo(Struct, forbid_unknown_fields=True, kw_only=True):
    index: NonNegInt
    name: str
    memory_mib: NonNegInt = 0
    utilization: float | None = None


class AgentRecord(Struct, forbid_unknown_fields=True, kw_only=True):
    """An agent's heartbeat, in the agents KV bucket (entries expire after the TTL)."""

    schema: Schema = SCHEMA
    agent_id: str
    node: str
    version: str
    device: Literal["cuda", "cpu"]
    gpus: list[GpuInfo]
    free_gpus: list[int]
    running_jobs: list[str]
    pools: list[str]
    started_at: float
    heartbeat_at: float = field(default_factory=now)


class GangState(enum.StrEnum):
    forming = "forming"  # the leader holds its GPUs and waits for members to join
    running = "running"  # every node joined; the job is claimed and each node runs torchrun
    stopping = "stopping"  # one node failed or the job was cancelled: every node stops its training
    aborted = "aborted"  # formation gave up (timeout, yielded to an older gang): everyone releases


class GangMember(Struct, forbid_unknown_fields=True, kw_only=True):
    agent: str
    node: str
    addr: str  # the address other nodes reach this one at (rendezvous and collectives)
    gpus: list[int]
    node_rank: NonNegInt
    joined_at: float = field(default_factory=now)
    exit_code: int | None = None  # set by the member when its torchrun has ended
    error: str | None = None
    handed_back: bool = False  # the member's agent stopped: not the training's fault


class GangRecord(Struct, forbid_unknown_fields=True, kw_only=True):
    """One multi-node job's gang, in the gangs KV bucket under the job id; changed only by compare-and-set.

    members[0] is the leader (node rank 0, the rendezvous host). See docs/scheduling.md.
    """

    schema: Schema = SCHEMA
    job_id: JobId
    leader: str
    nodes: Annotated[int, Meta(ge=2, le=64)]
    gpus_per_node: PosInt
    node_pool: str  # the single-node pool a member must serve, e.g. n1g2h100
    submitted_at: float  # the job's submission time: older gangs go first
    state: GangState = GangState.forming
    attempt: NonNegInt = 0  # the job attempt this gang runs (set when it starts running)
    rdzv_endpoint: str
    timeout_s: Annotated[float, Meta(gt=0)]
    members: list[GangMember] = field(default_factory=list)
    reason: str | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)

    @property
    def order(self) -> tuple[float, str]:
        return (self.submitted_at, self.job_id)

    def member(self, agent: str) -> GangMember | None:
        return next((m for m in self.members if m.agent == agent), None)
