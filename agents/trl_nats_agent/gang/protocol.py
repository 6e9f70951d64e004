"""The gang protocol's record changes, as pure functions of a ``GangRecord`` (no I/O, no clock reads).

Each change returns the new record, or None when it does not apply (the record is
not in the state the change expects, or it is someone else's): the board's
compare-and-set then leaves the record alone. ``at`` is the wall-clock time the
caller read; see ``gang/__init__.py`` for the protocol these steps make up.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from trl_nats.messages import GangMember, GangRecord, GangState

# a member gives up this long after the gang's own timeout, so the leader's abort normally comes first
MEMBER_GRACE_S = 5.0


@dataclass(frozen=True)
class GangLaunch:
    """How one node of a running gang starts torchrun."""

    nnodes: int
    node_rank: int
    rdzv_endpoint: str
    local_addr: str
    ifname: str | None

    @property
    def leader(self) -> bool:
        return self.node_rank == 0


def live_forming(rec: GangRecord, at: float) -> bool:
    """Still collecting members: forming and not past its timeout (plus the members' grace)."""
    return rec.state is GangState.forming and at < rec.created_at + rec.timeout_s + MEMBER_GRACE_S


def older_forming(records: list[GangRecord], mine: GangRecord, at: float) -> GangRecord | None:
    """The oldest live forming gang older than ``mine`` (submission time, then job id): the older gang wins."""
    older = [r for r in records if r.job_id != mine.job_id and live_forming(r, at) and r.order < mine.order]
    return min(older, key=lambda r: r.order) if older else None


def joinable(rec: GangRecord, agent_id: str, pools: list[str], at: float) -> bool:
    """Could this agent join ``rec`` (before checking its free GPUs and its policy)?"""
    return (
        live_forming(rec, at)
        and len(rec.members) < rec.nodes
        and rec.member(agent_id) is None
        and rec.node_pool in pools
    )


def join(rec: GangRecord, agent: str, node: str, addr: str, gpus: list[int], at: float) -> GangRecord:
    """``rec`` with the agent added as the next node rank."""
    me = GangMember(agent=agent, node=node, addr=addr, gpus=gpus, node_rank=len(rec.members), joined_at=at)
    return msgspec.structs.replace(rec, members=[*rec.members, me], updated_at=at)


def leave(rec: GangRecord, agent_id: str) -> GangRecord | None:
    """A member leaves a forming gang; the others keep their order and are renumbered."""
    if rec.state is not GangState.forming or rec.member(agent_id) is None:
        return None
    members = [m for m in rec.members if m.agent != agent_id]
    return msgspec.structs.replace(
        rec, members=[msgspec.structs.replace(m, node_rank=i) for i, m in enumerate(members)]
    )


def report_exit(
    rec: GangRecord, agent_id: str, attempt: int, rc: int | None, error: str | None, handed_back: bool
) -> GangRecord | None:
    """A node's outcome of ``attempt``; a failure or a hand-back moves a running gang to stopping."""
    me = rec.member(agent_id)
    if rec.attempt != attempt or me is None:
        return None
    members = [
        msgspec.structs.replace(m, exit_code=rc if rc is not None else -1, error=error, handed_back=handed_back)
        if m.agent == agent_id
        else m
        for m in rec.members
    ]
    state, reason = rec.state, rec.reason
    if (rc != 0 or handed_back) and rec.state is GangState.running:
        state = GangState.stopping
        reason = f"node {me.node_rank} ({agent_id}) " + (
            "was handed back (agent stopping)" if handed_back else f"ended with {rc}"
        )
    return msgspec.structs.replace(rec, members=members, state=state, reason=reason)


def move(rec: GangRecord, leader: str, attempt: int, state: GangState, reason: str) -> GangRecord | None:
    """The leader moves its gang of ``attempt`` to ``state`` (e.g. stopping)."""
    if rec.attempt != attempt or rec.leader != leader or rec.state is state:
        return None
    return msgspec.structs.replace(rec, state=state, reason=reason)


def abort(rec: GangRecord, leader: str, reason: str) -> GangRecord | None:
    """The leader gives up on its forming gang."""
    if rec.leader != leader or rec.state is not GangState.forming:
        return None
    return msgspec.structs.replace(rec, state=GangState.aborted, reason=reason)


def start(rec: GangRecord, attempt: int, at: float) -> GangRecord:
    """Every node is in and the job is claimed for ``attempt``: the members start training."""
    return msgspec.structs.replace(rec, state=GangState.running, attempt=attempt, updated_at=at)


def stale(old: GangRecord, leader: str, at: float, leader_alive: bool) -> bool:
    """May a new forming record replace ``old``? (aborted, timed out, or led by an agent gone quiet)"""
    return (
        old.state is GangState.aborted
        or (old.state is GangState.forming and not live_forming(old, at))
        or (old.leader != leader and not leader_alive)
    )


def launch(rec: GangRecord, agent_id: str, ifname: str | None) -> GangLaunch:
    me = rec.member(agent_id)
    assert me is not None
    return GangLaunch(
        nnodes=rec.nodes, node_rank=me.node_rank, rdzv_endpoint=rec.rdzv_endpoint, local_addr=me.addr, ifname=ifname
    )


def settle(
    rec: GangRecord, leader: str, rc: int | None, error: str | None, stop_reason: str | None
) -> tuple[int | None, str | None, bool]:
    """One outcome for the whole gang from the leader's exit and every member's report:
    (exit code, error, handed back)."""
    others = [m for m in rec.members if m.agent != leader]
    handed_back = any(m.handed_back for m in others)
    if rc == 0 and all(m.exit_code == 0 for m in others):
        return 0, None, handed_back
    if rc != 0 and not stop_reason:
        return rc, error, handed_back
    failed = next((m for m in others if m.exit_code not in (0, None) and not m.handed_back), None)
    if failed is not None:
        return (
            failed.exit_code,
            f"node {failed.node_rank} ({failed.agent}) failed: {failed.error or failed.exit_code}",
            handed_back,
        )
    missing = next((m for m in others if m.exit_code is None), None)
    if missing is not None:
        return None, f"node {missing.node_rank} ({missing.agent}) never reported an outcome", handed_back
    return rc if rc != 0 else 1, error or stop_reason, handed_back


def host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr
