"""The gang protocol's record changes (agents/trl_nats_agent/gang/protocol.py): pure, no NATS, no processes."""

from __future__ import annotations

import pytest
from trl_nats_agent.gang import protocol

from trl_nats.messages import GangMember, GangRecord, GangState

T0 = 1_000_000.0


def gang(job_id="job-a", *, leader="lead", nodes=3, state=GangState.forming, submitted_at=T0, members=None, **kw):
    members = members if members is not None else [member(leader, 0)]
    return GangRecord(
        job_id=job_id,
        leader=leader,
        nodes=nodes,
        gpus_per_node=1,
        node_pool="n1g1",
        submitted_at=submitted_at,
        state=state,
        rdzv_endpoint="10.0.0.1:29500",
        timeout_s=10.0,
        members=members,
        created_at=T0,
        updated_at=T0,
        **kw,
    )


def member(agent, rank, **kw):
    return GangMember(agent=agent, node=f"node-{agent}", addr=f"10.0.0.{rank + 1}", gpus=[0], node_rank=rank, **kw)


# -- join -------------------------------------------------------------------------------


def test_join_takes_the_next_node_rank():
    rec = protocol.join(gang(), "b", "node-b", "10.0.0.2", [1], T0 + 1)
    assert [(m.agent, m.node_rank) for m in rec.members] == [("lead", 0), ("b", 1)]
    assert rec.members[1].gpus == [1] and rec.members[1].addr == "10.0.0.2" and rec.members[1].joined_at == T0 + 1
    assert rec.updated_at == T0 + 1
    rec = protocol.join(rec, "c", "node-c", "10.0.0.3", [0], T0 + 2)
    assert [m.node_rank for m in rec.members] == [0, 1, 2]


@pytest.mark.parametrize(
    "rec,agent,pools,at,expected",
    [
        (gang(), "b", ["n1g1"], T0 + 1, True),
        (gang(), "lead", ["n1g1"], T0 + 1, False),  # already in it
        (gang(), "b", ["n1g2"], T0 + 1, False),  # cannot serve the node shape
        (gang(nodes=2, members=[member("lead", 0), member("b", 1)]), "c", ["n1g1"], T0 + 1, False),  # full
        (gang(state=GangState.running), "b", ["n1g1"], T0 + 1, False),  # not forming
        (gang(), "b", ["n1g1"], T0 + 10.0 + protocol.MEMBER_GRACE_S - 0.01, True),  # within timeout + grace
        (gang(), "b", ["n1g1"], T0 + 10.0 + protocol.MEMBER_GRACE_S, False),  # past it
    ],
    ids=["open", "already-member", "wrong-pool", "full", "running", "before-deadline", "past-deadline"],
)
def test_joinable(rec, agent, pools, at, expected):
    assert protocol.joinable(rec, agent, pools, at) is expected


# -- leave ------------------------------------------------------------------------------


def test_leave_renumbers_the_rest_in_order():
    rec = gang(members=[member("lead", 0), member("b", 1), member("c", 2)])
    after = protocol.leave(rec, "b")
    assert [(m.agent, m.node_rank) for m in after.members] == [("lead", 0), ("c", 1)]


@pytest.mark.parametrize(
    "rec,agent",
    [(gang(members=[member("lead", 0), member("b", 1)], state=GangState.running), "b"), (gang(), "stranger")],
    ids=["not-forming", "not-a-member"],
)
def test_leave_does_not_apply(rec, agent):
    assert protocol.leave(rec, agent) is None


# -- report an exit; the gang stops on a failure --------------------------------------------


def running(**kw):
    return gang(state=GangState.running, attempt=2, members=[member("lead", 0), member("b", 1), member("c", 2)], **kw)


def test_a_clean_exit_is_recorded_and_the_gang_keeps_running():
    after = protocol.report_exit(running(), "b", 2, 0, None, False)
    assert after.member("b").exit_code == 0 and after.state is GangState.running and after.reason is None


def test_a_failed_node_moves_the_gang_to_stopping():
    after = protocol.report_exit(running(), "b", 2, 2, "row 3 is bad", False)
    assert after.member("b").exit_code == 2 and after.member("b").error == "row 3 is bad"
    assert after.state is GangState.stopping and after.reason == "node 1 (b) ended with 2"


def test_no_exit_code_is_recorded_as_minus_one():
    assert protocol.report_exit(running(), "c", 2, None, "agent error", False).member("c").exit_code == -1


def test_a_handed_back_node_stops_the_gang_without_blame():
    after = protocol.report_exit(running(), "c", 2, -15, None, True)
    assert after.member("c").handed_back and after.state is GangState.stopping
    assert after.reason == "node 2 (c) was handed back (agent stopping)"


@pytest.mark.parametrize("attempt,agent", [(1, "b"), (2, "stranger")], ids=["older-attempt", "not-a-member"])
def test_report_exit_does_not_apply(attempt, agent):
    assert protocol.report_exit(running(), agent, attempt, 1, "x", False) is None


# -- abort, move -----------------------------------------------------------------------------


def test_abort_is_the_leaders_and_only_while_forming():
    after = protocol.abort(gang(), "lead", "timed out")
    assert after.state is GangState.aborted and after.reason == "timed out"
    assert protocol.abort(gang(), "b", "x") is None
    assert protocol.abort(running(), "lead", "x") is None


def test_move_is_the_leaders_for_its_attempt():
    after = protocol.move(running(), "lead", 2, GangState.stopping, "cancelled: user")
    assert after.state is GangState.stopping and after.reason == "cancelled: user"
    assert protocol.move(running(), "b", 2, GangState.stopping, "x") is None  # not the leader
    assert protocol.move(running(), "lead", 1, GangState.stopping, "x") is None  # another attempt's gang
    assert protocol.move(running(), "lead", 2, GangState.running, "x") is None  # already in that state


def test_start_runs_the_gang_for_the_claimed_attempt():
    after = protocol.start(gang(), 4, T0 + 3)
    assert after.state is GangState.running and after.attempt == 4 and after.updated_at == T0 + 3


# -- the older gang wins -----------------------------------------------------------------------


def test_the_older_forming_gang_wins():
    mine = gang("job-b", submitted_at=T0 + 5)
    older = gang("job-a", leader="x", submitted_at=T0 + 1)
    oldest_dead = gang("job-0", leader="y", submitted_at=T0, state=GangState.aborted)
    newer = gang("job-c", leader="z", submitted_at=T0 + 9)
    assert protocol.older_forming([mine, older, oldest_dead, newer], mine, T0 + 1) is older
    assert protocol.older_forming([mine, newer], mine, T0 + 1) is None
    # the same submission time: the job id breaks the tie, so both leaders agree on one winner
    twin = gang("job-a2", leader="w", submitted_at=T0 + 5)
    assert protocol.older_forming([mine, twin], mine, T0 + 1) is twin  # "job-a2" < "job-b"
    assert protocol.older_forming([mine, twin], twin, T0 + 1) is None
    # a forming gang past its deadline no longer counts
    assert protocol.older_forming([mine, older], mine, T0 + 10.0 + protocol.MEMBER_GRACE_S) is None


@pytest.mark.parametrize(
    "old,alive,at,expected",
    [
        (gang(state=GangState.aborted), True, T0, True),
        (gang(), True, T0 + 10.0 + protocol.MEMBER_GRACE_S, True),  # forming, timed out
        (gang(), True, T0 + 1, False),  # forming, live, leader alive
        (gang(state=GangState.running), False, T0 + 1, True),  # its leader gone quiet
        (gang(state=GangState.running), True, T0 + 1, False),
    ],
    ids=["aborted", "timed-out", "live", "leader-gone", "running"],
)
def test_a_stale_record_may_be_replaced(old, alive, at, expected):
    assert protocol.stale(old, "new-leader", at, alive) is expected


# -- settle: one outcome for the whole gang ----------------------------------------------------------


def settled(*others, rc=0, error=None, stop_reason=None):
    rec = gang(state=GangState.stopping, members=[member("lead", 0), *others])
    return protocol.settle(rec, "lead", rc, error, stop_reason)


def test_settle_completed_when_every_node_exited_0():
    assert settled(member("b", 1, exit_code=0), member("c", 2, exit_code=0)) == (0, None, False)


def test_settle_the_leaders_own_failure():
    assert settled(member("b", 1, exit_code=0), rc=1, error="boom") == (1, "boom", False)


def test_settle_a_members_failure_when_the_leader_was_stopped_for_it():
    out = settled(member("b", 1, exit_code=2, error="bad rows"), rc=-15, stop_reason="node 1 (b) ended with 2")
    assert out == (2, "node 1 (b) failed: bad rows", False)


def test_settle_a_member_that_never_reported():
    out = settled(member("b", 1), rc=-15, stop_reason="node 1 (b) stopped heartbeating")
    assert out == (None, "node 1 (b) never reported an outcome", False)


def test_settle_a_handed_back_member_makes_it_a_hand_back():
    out = settled(member("b", 1, exit_code=-15, handed_back=True), rc=-15, stop_reason="node 1 (b) was handed back")
    assert out == (-15, "node 1 (b) was handed back", True)


def test_settle_stopped_without_a_culprit_is_an_error():
    assert settled(member("b", 1, exit_code=0), rc=-15, stop_reason="its gang is gone") == (
        -15,
        "its gang is gone",
        False,
    )


def test_launch_for_a_member():
    rec = running()
    launch = protocol.launch(rec, "c", "eth0")
    assert (launch.nnodes, launch.node_rank, launch.rdzv_endpoint, launch.local_addr) == (
        3,
        2,
        "10.0.0.1:29500",
        "10.0.0.3",
    )
    assert launch.ifname == "eth0" and not launch.leader and protocol.launch(rec, "lead", None).leader
    assert protocol.host("fe80::1") == "[fe80::1]" and protocol.host("10.0.0.1") == "10.0.0.1"
