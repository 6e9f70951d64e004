"""Multi-node jobs: gang scheduling through the gangs KV bucket, for one agent.

A job with ``nodes = N > 1`` waits in the gang queue of its node shape. The agent that
fetches it (with the GPUs for one node free) becomes the gang's leader: it writes a
``forming`` gang record naming itself node rank 0 and a rendezvous endpoint on its own
address. Every agent watches the bucket; one with the GPUs free joins the oldest forming
gang it can host by compare-and-set, taking the next node rank. When N nodes have joined,
the leader claims the job in the jobs bucket (the usual CAS claim, with an allocation per
node) and marks the gang ``running``; every member then starts ``torchrun --nnodes=N
--node-rank=k`` against the leader's rendezvous.

Nothing partial survives: if the gang is not complete within ``gang_timeout_s`` the leader
aborts it and puts the job back in the queue (a wait, not a failed attempt), and each
member also gives up on its own clock after the timeout, so no GPU stays reserved by a
job that cannot start, even if the leader dies. Two gangs competing for the same agents
cannot deadlock: a leader that sees an older forming gang (by submission time, then job
id) aborts its own and joins that one, so at most one gang in a contended fleet is ever
collecting members. Once running, any node whose training ends with an error (or whose
agent disappears) moves the gang to ``stopping``, every node stops, and the leader writes
one outcome for the whole job: retried as one, up to its max_attempts.

See docs/scheduling.md for the full protocol and its failure cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from trl_nats.messages import (
    Allocation,
    BadMessage,
    GangMember,
    GangRecord,
    GangState,
    JobRecord,
    JobSpec,
    JobState,
    Resources,
    decode,
    encode,
    now,
)
from trl_nats.store import IllegalTransition, JobNotFound, LostClaim
from trl_nats_agent.launcher import free_port

if TYPE_CHECKING:
    from trl_nats_agent.agent import Agent, RunningJob

log = logging.getLogger("trl_nats_agent.gang")

# a member gives up this long after the gang's own timeout, so the leader's abort normally comes first
MEMBER_GRACE_S = 5.0
# how often forming and running gangs re-check clocks and liveness between watch updates
TICK_S = 0.25


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


class Gangs:
    """Leads gangs for the multi-node jobs this agent fetches and joins the gangs of others."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.view: dict[str, tuple[GangRecord, int]] = {}  # job id -> (record, revision), from the watch
        self._tick = asyncio.Event()
        self._joining: set[str] = set()
        self._refused: dict[str, str] = {}  # job id -> why this agent's policy refuses to run it
        self._tasks: set[asyncio.Task] = set()

    @property
    def queues(self) -> list[tuple[str, int]]:
        """(gang queue, GPUs per node) for every node shape this agent can host."""
        return [
            (Resources(nodes=2, gpus_per_node=r.gpus_per_node, gpu_type=r.gpu_type).queue, r.gpus_per_node)
            for r in self.agent.shapes
        ]

    @property
    def kv(self):
        return self.agent.topo.gangs

    def _changed(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _wait_change(self, timeout: float = TICK_S) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tick.wait(), timeout)

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the watch: every agent's view of every gang ----------------------------------
    def _active(self) -> bool:
        """The watch runs until the agent stops and its gang tasks (which read the view) are done."""
        return not self.agent._stopping.is_set() or bool(self._tasks)

    async def run(self) -> None:
        """Keep ``view`` current and join gangs when there is room; until the agent stops."""
        while self._active():
            try:
                watcher = await self.kv.watchall()
            except Exception as exc:  # broker restarting
                log.info("gang watch not started (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            try:
                await self._follow(watcher)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gang watch failed; restarting it")
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()

    async def _follow(self, watcher) -> None:
        while self._active():
            try:
                entry = await watcher.updates(timeout=0.5)
            except Exception:  # nats TimeoutError: nothing changed
                entry = None
            if isinstance(entry, KeyValue.Entry):
                self._apply(entry)
            await self._maybe_join()

    def _apply(self, entry: KeyValue.Entry) -> None:
        known = self.view.get(entry.key)
        if known is not None and known[1] >= entry.revision:
            return  # our own write got here first: never step back to an older revision
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self.view.pop(entry.key, None)
        else:
            try:
                self.view[entry.key] = (decode(entry.value, GangRecord), entry.revision)
            except BadMessage as exc:
                log.warning("ignoring gang record %s: %s", entry.key, exc)
                return
        self._changed()

    def _live_forming(self, record: GangRecord) -> bool:
        return record.state is GangState.forming and now() < record.created_at + record.timeout_s + MEMBER_GRACE_S

    # -- joining someone else's gang ----------------------------------------------------
    async def _maybe_join(self) -> None:
        a = self.agent
        if a._stopping.is_set():
            return
        candidates = sorted(
            (
                (rec, rev)
                for rec, rev in self.view.values()
                if self._live_forming(rec)
                and len(rec.members) < rec.nodes
                and rec.member(a.id) is None
                and rec.node_pool in a.pools
                and rec.job_id not in self._joining
            ),
            key=lambda rr: rr[0].order,
        )
        for rec, rev in candidates:
            if len(a.free) < rec.gpus_per_node or rec.job_id in self._refused:
                continue
            if not await self._acceptable(rec.job_id):
                continue
            gpus = a.reserve(rec.gpus_per_node)
            me = GangMember(agent=a.id, node=a.cfg.node, addr=a.addr, gpus=gpus, node_rank=len(rec.members))
            new = msgspec.structs.replace(rec, members=[*rec.members, me], updated_at=now())
            try:
                revision = await self.kv.update(rec.job_id, encode(new), last=rev)
            except KeyWrongLastSequenceError:
                a._release(gpus)  # it changed under us: the watch brings the new state, try again then
                continue
            except Exception as exc:
                a._release(gpus)
                log.info("joining gang %s failed: %s", rec.job_id, exc)
                continue
            self.view[rec.job_id] = (new, revision)
            self._joining.add(rec.job_id)
            a.metrics.gang_joined()
            log.info("joined gang %s as node %d of %d", rec.job_id, me.node_rank, rec.nodes)
            self.spawn(self._member(rec.job_id, gpus, rec.timeout_s), f"gang-member-{rec.job_id}")

    async def _acceptable(self, job_id: str) -> bool:
        """Would this agent run the job at all (its operator's policy: model roots, remote code, outputs)?"""
        try:
            spec = (await self.agent.store.get(job_id)).spec
            self.agent.policy.check(spec)
        except (JobNotFound, BadMessage) as exc:
            self._refused[job_id] = str(exc)
            log.warning("not joining the gang of %s: %s", job_id, exc)
            return False
        return True

    async def _member(self, job_id: str, gpus: list[int], timeout_s: float) -> None:
        """Wait for the gang to start (or give up on our own clock), then run our node of it."""
        a = self.agent
        give_up = time.monotonic() + timeout_s + MEMBER_GRACE_S
        started_wait = time.monotonic()
        try:
            while True:
                rec = self._mine(job_id)
                if rec is None or rec.state in (GangState.aborted, GangState.stopping):
                    reason = rec.reason if rec else "gang record removed"
                    log.info("gang %s did not start (%s): releasing GPUs %s", job_id, reason, gpus)
                    return
                if rec.state is GangState.running:
                    break
                if time.monotonic() > give_up or a._stopping.is_set():
                    log.warning(
                        "gang %s still forming %.0fs after we joined: leaving it, releasing GPUs",
                        job_id,
                        timeout_s + MEMBER_GRACE_S,
                    )
                    await self._leave(job_id)
                    return
                await self._wait_change()
            a.metrics.gang_reserved(time.monotonic() - started_wait)
            try:
                spec = (await a.store.get(job_id)).spec
            except (JobNotFound, BadMessage) as exc:
                log.error("gang %s: job record unreadable (%s)", job_id, exc)
                await self._report_exit(job_id, rec.attempt, None, f"member {a.id}: job record unreadable: {exc}")
                return
            job = a.new_running_job(spec, rec.attempt, None, gpus, self._launch(rec))
            a.running[job_id] = job
            await a._heartbeat_once()
            job.task = asyncio.current_task()
            try:
                rc, error = await a._train(job)
            except Exception as exc:
                log.exception("gang %s: member-side failure", job_id)
                rc, error = None, f"agent error on {a.id}: {exc}"
            await self._report_exit(job_id, job.attempt, rc, error, handed_back=job.handed_back)
            log.info("gang %s attempt %d: node %d ended with %s", job_id, job.attempt, job.gang.node_rank, rc)
        finally:
            self._joining.discard(job_id)
            a.running.pop(job_id, None)
            a._release(gpus)
            await a._heartbeat_once()

    def _mine(self, job_id: str) -> GangRecord | None:
        """Our gang's record while we are still in it (a new attempt's gang is not ours)."""
        entry = self.view.get(job_id)
        if entry is None or entry[0].member(self.agent.id) is None:
            return None
        return entry[0]

    async def _leave(self, job_id: str) -> None:
        def drop(rec: GangRecord) -> GangRecord | None:
            if rec.state is not GangState.forming or rec.member(self.agent.id) is None:
                return None
            members = [m for m in rec.members if m.agent != self.agent.id]
            return msgspec.structs.replace(
                rec, members=[msgspec.structs.replace(m, node_rank=i) for i, m in enumerate(members)]
            )

        with contextlib.suppress(Exception):
            await self._cas(job_id, drop)

    def _launch(self, rec: GangRecord) -> GangLaunch:
        me = rec.member(self.agent.id)
        assert me is not None
        return GangLaunch(
            nnodes=rec.nodes,
            node_rank=me.node_rank,
            rdzv_endpoint=rec.rdzv_endpoint,
            local_addr=me.addr,
            ifname=self.agent.ifname,
        )

    async def _report_exit(
        self, job_id: str, attempt: int, rc: int | None, error: str | None, *, handed_back: bool = False
    ) -> None:
        """Write our node's outcome into the gang; a failure also stops every other node."""
        me = self.agent.id

        def report(rec: GangRecord) -> GangRecord | None:
            if rec.attempt != attempt or rec.member(me) is None:
                return None
            members = [
                msgspec.structs.replace(m, exit_code=rc if rc is not None else -1, error=error, handed_back=handed_back)
                if m.agent == me
                else m
                for m in rec.members
            ]
            state, reason = rec.state, rec.reason
            if (rc != 0 or handed_back) and rec.state is GangState.running:
                state = GangState.stopping
                reason = f"node {rec.member(me).node_rank} ({me}) " + (
                    "was handed back (agent stopping)" if handed_back else f"ended with {rc}"
                )
            return msgspec.structs.replace(rec, members=members, state=state, reason=reason)

        try:
            await self._cas(job_id, report)
        except Exception as exc:
            log.warning("gang %s: exit of this node not recorded: %s", job_id, exc)

    async def _cas(self, job_id: str, change, retries: int = 50) -> GangRecord | None:
        """Read-modify-write the gang record; ``change`` returns the new record or None to leave it."""
        for _ in range(retries):
            try:
                entry = await self.kv.get(job_id)
            except KeyNotFoundError:
                return None
            if not entry.value:
                return None
            rec = decode(entry.value, GangRecord)
            new = change(rec)
            if new is None:
                return None
            new = msgspec.structs.replace(new, updated_at=now())
            try:
                revision = await self.kv.update(job_id, encode(new), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            self.view[job_id] = (new, revision)
            self._changed()
            return new
        raise RuntimeError(f"gang {job_id}: gave up after {retries} conflicting writes")

    # -- while training: every node watches the others ------------------------------
    async def monitor(self, job: RunningJob) -> None:
        """Stop this node's training when the gang stops or a peer disappears."""
        a = self.agent
        jid = job.spec.job_id
        launch = job.gang
        assert launch is not None
        while True:
            await self._wait_change(1.0)
            rec = self._mine(jid)
            reason = None
            if rec is None or rec.attempt != job.attempt:
                reason = "its gang is gone"
            elif rec.state is GangState.stopping:
                reason = rec.reason or "the gang is stopping"
            else:
                for m in rec.members:
                    if m.agent != a.id and m.exit_code is None and not await self._alive(m.agent, jid):
                        reason = f"node {m.node_rank} ({m.agent}) stopped heartbeating"
                        break
                    if m.agent != a.id and m.exit_code not in (None, 0):
                        reason = f"node {m.node_rank} ({m.agent}) ended with {m.exit_code}"
                        break
            if reason is None:
                continue
            log.warning("gang %s: stopping node %d: %s", jid, launch.node_rank, reason)
            if launch.leader and rec is not None and rec.state is GangState.running:
                await self._set_state(jid, job.attempt, GangState.stopping, reason)
            job.gang_stop_reason = reason
            if job.proc:
                await job.proc.stop(a.cfg.cancel_grace_s)
            return

    async def _alive(self, agent_id: str, job_id: str) -> bool:
        """The agent's heartbeat is in the agents bucket and fresh."""
        return await self.agent.fresh_heartbeat(agent_id) is not None

    async def _set_state(self, job_id: str, attempt: int, state: GangState, reason: str) -> None:
        def move(rec: GangRecord) -> GangRecord | None:
            if rec.attempt != attempt or rec.leader != self.agent.id or rec.state is state:
                return None
            return msgspec.structs.replace(rec, state=state, reason=reason)

        with contextlib.suppress(Exception):
            await self._cas(job_id, move)

    # -- leading a gang ---------------------------------------------------------------
    async def lead(self, msg: Msg, spec: JobSpec, gpus: list[int]) -> None:
        """Form a gang for ``spec`` (fetched by this agent, ``gpus`` reserved), then run it or put it back."""
        a = self.agent
        jid = spec.job_id
        keepalive = self.spawn(self._keep_message(msg), f"gang-keepalive-{jid}")
        handed_to_run = False
        try:
            record = await a.check_claimable(msg, spec)
            if record is None:
                return
            formed = await self._form(msg, spec, record, gpus)
            if formed is None:
                return
            gang, revision = formed
            job = await self._claim(msg, spec, record, gang, revision, gpus)
            if job is None:
                return
            keepalive.cancel()
            handed_to_run = True
            job.task = asyncio.current_task()
            await a._run_job(job)
        except Exception:
            log.exception("leading gang %s failed", jid)
            with contextlib.suppress(Exception):
                await self._abort(jid, "leader error")
            with contextlib.suppress(Exception):
                await msg.nak(delay=a.cfg.retry_backoff_s)
        finally:
            keepalive.cancel()
            if not handed_to_run:
                a._release(gpus)

    async def _keep_message(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.agent.cfg.keepalive_s)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _form(self, msg: Msg, spec: JobSpec, record: JobRecord, gpus: list[int]) -> tuple[GangRecord, int] | None:
        a = self.agent
        jid = spec.job_id
        res = spec.resources
        timeout = a.cfg.gang_timeout_s
        gang = GangRecord(
            job_id=jid,
            leader=a.id,
            nodes=res.nodes,
            gpus_per_node=res.gpus_per_node,
            node_pool=res.node_pool,
            submitted_at=record.submitted_at,
            rdzv_endpoint=f"{_host(a.addr)}:{free_port(a.addr)}",
            timeout_s=timeout,
            members=[GangMember(agent=a.id, node=a.cfg.node, addr=a.addr, gpus=gpus, node_rank=0)],
        )
        older = self._older_forming(gang)
        if older is not None:  # known already: do not even start collecting members
            a.metrics.gang_outcome("yielded")
            a.emit_log(spec, record.attempt, f"gang: yielded to the older gang of {older.job_id}; back to the queue")
            await msg.nak(delay=a.cfg.retry_backoff_s)
            return None
        revision = await self._create(gang)
        if revision is None:
            await msg.nak(delay=a.cfg.retry_backoff_s)
            return None
        self.view[jid] = (gang, revision)
        self._changed()
        started = time.monotonic()
        a.emit_log(spec, record.attempt, f"gang: forming {res.nodes} nodes x {res.gpus_per_node} GPU(s), led by {a.id}")
        while True:
            entry = self.view.get(jid)
            current = entry[0] if entry else None
            if current is None or current.leader != a.id or current.created_at != gang.created_at:
                log.warning("gang %s: our forming record was replaced; putting the job back", jid)
                await msg.nak(delay=a.cfg.retry_backoff_s)
                a.metrics.gang_outcome("lost")
                return None
            if len(current.members) >= current.nodes:
                a.metrics.gang_outcome("formed")
                a.metrics.gang_reserved(time.monotonic() - started)
                return current, entry[1]
            older = self._older_forming(current)
            waited = time.monotonic() - started
            reason = None
            if older is not None:
                reason, outcome = f"yielded to the older gang of {older.job_id}", "yielded"
            elif waited > timeout:
                joined = len(current.members)
                reason, outcome = f"timed out: {joined} of {current.nodes} nodes joined in {waited:.0f}s", "timeout"
            elif a._stopping.is_set():
                reason, outcome = f"leader {a.id} is stopping", "stopping"
            if reason is not None:
                await self._abort(jid, reason)
                a.metrics.gang_outcome(outcome)
                log.info("gang %s: %s; the job goes back to the queue", jid, reason)
                a.emit_log(spec, record.attempt, f"gang: {reason}; back to the queue")
                await msg.nak(delay=0 if outcome == "stopping" else a.cfg.retry_backoff_s)
                return None
            await self._wait_change()

    def _older_forming(self, mine: GangRecord) -> GangRecord | None:
        older = [r for r, _ in self.view.values() if r.job_id != mine.job_id and self._live_forming(r)]
        older = [r for r in older if r.order < mine.order]
        return min(older, key=lambda r: r.order) if older else None

    async def _create(self, gang: GangRecord) -> int | None:
        """Write a new forming record; replace a stale one; None if another leader is active."""
        try:
            return await self.kv.create(gang.job_id, encode(gang))
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(gang.job_id)
        except KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            try:
                return await self.kv.create(gang.job_id, encode(gang))
            except KeyWrongLastSequenceError:
                return None
        try:
            old = decode(entry.value, GangRecord)
            stale = (
                old.state is GangState.aborted
                or (old.state is GangState.forming and not self._live_forming(old))
                or (old.leader != self.agent.id and not await self._alive(old.leader, old.job_id))
            )
        except BadMessage:
            stale = True
        if not stale:
            log.info("gang %s is led by %s already; leaving the job to it", gang.job_id, old.leader)
            return None
        try:
            return await self.kv.update(gang.job_id, encode(gang), last=entry.revision)
        except KeyWrongLastSequenceError:
            return None

    async def _abort(self, job_id: str, reason: str) -> None:
        def abort(rec: GangRecord) -> GangRecord | None:
            if rec.leader != self.agent.id or rec.state is not GangState.forming:
                return None
            return msgspec.structs.replace(rec, state=GangState.aborted, reason=reason)

        await self._cas(job_id, abort)
        await self._delete(job_id)

    async def _delete(self, job_id: str) -> None:
        entry = self.view.get(job_id)
        if entry is None or entry[0].leader != self.agent.id:
            return
        with contextlib.suppress(Exception):
            await self.kv.delete(job_id, last=entry[1])
        self.view.pop(job_id, None)
        self._changed()

    async def _claim(
        self, msg: Msg, spec: JobSpec, record: JobRecord, gang: GangRecord, revision: int, gpus: list[int]
    ) -> RunningJob | None:
        """Every node is in: claim the job for the gang (CAS), then tell the members to start."""
        a = self.agent
        jid = spec.job_id
        attempt = record.attempt + 1
        device = a.cfg.device
        allocation = [
            Allocation(
                agent=m.agent, node=m.node, gpus=m.gpus, gpu_type=None if device == "cpu" else a.cfg.gpus[0].name
            )
            for m in gang.members
        ]
        try:
            claimed = await a.store.transition(
                jid,
                JobState.in_progress,
                owner=record.owner,
                attempt=record.attempt,
                allowed_from=frozenset({JobState.scheduled, JobState.in_progress}),
                change=lambda r: {
                    "owner": a.id,
                    "attempt": attempt,
                    "runs": r.runs + 1,
                    "allocation": allocation,
                    "started_at": now(),
                },
            )
        except (LostClaim, IllegalTransition) as exc:
            log.info("gang %s formed but the job was not claimed: %s", jid, exc)
            await self._abort(jid, f"job not claimable: {exc}")
            if isinstance(exc, IllegalTransition) and exc.record.state.terminal:
                await msg.ack()
            else:
                await msg.nak(delay=a.cfg.retry_backoff_s)
            return None
        running = msgspec.structs.replace(gang, state=GangState.running, attempt=attempt, updated_at=now())
        try:
            revision = await self.kv.update(jid, encode(running), last=revision)
        except KeyWrongLastSequenceError:
            # a member left at its own deadline just now: hand the claim back and try again later
            log.warning("gang %s changed while starting; handing the job back", jid)
            await a.store.transition(
                jid,
                JobState.scheduled,
                owner=a.id,
                attempt=attempt,
                change=lambda r: {"owner": None, "allocation": [], "attempt": max(0, r.attempt - 1)},
            )
            await self._abort(jid, "a member left while the gang was starting")
            await msg.nak(delay=a.cfg.retry_backoff_s)
            return None
        self.view[jid] = (running, revision)
        self._changed()
        a.claims += 1
        a.metrics.claimed(record)
        job = a.new_running_job(spec, attempt, msg, gpus, self._launch(running), run=claimed.runs)
        a.running[jid] = job
        log.info(
            "gang %s attempt %d formed: %s",
            jid,
            attempt,
            ", ".join(f"node {m.node_rank} {m.agent}@{m.addr}" for m in running.members),
        )
        return job

    def describe(self, job: RunningJob) -> str:
        """The claim message for a gang job's status event."""
        entry = self.view.get(job.spec.job_id)
        rec = entry[0] if entry else None
        nodes = ", ".join(f"node {m.node_rank} {m.agent} {m.gpus}" for m in rec.members) if rec else "?"
        return f"claimed by a gang of {job.gang.nnodes} nodes led by {self.agent.id}: {nodes}"

    async def settle(self, job: RunningJob, rc: int | None, error: str | None) -> tuple[int | None, str | None]:
        """The leader's training ended: stop the gang if needed, wait for every node, return one outcome."""
        a = self.agent
        jid = job.spec.job_id
        if rc != 0 or job.cancel_reason or job.handed_back:
            why = job.cancel_reason and f"cancelled: {job.cancel_reason}"
            why = why or (
                "leader handed back (agent stopping)" if job.handed_back else f"node 0 ({a.id}) ended with {rc}"
            )
            await self._set_state(jid, job.attempt, GangState.stopping, why)
        deadline = time.monotonic() + a.cfg.cancel_grace_s + 60.0
        while True:
            rec = self._mine(jid)
            if rec is None:
                break
            waiting = [m for m in rec.members if m.agent != a.id and m.exit_code is None]
            dead = [m for m in waiting if not await self._alive(m.agent, jid)]
            if not waiting or len(dead) == len(waiting) or time.monotonic() > deadline:
                break
            await self._wait_change(1.0)
        rec = self._mine(jid)
        await self._delete(jid)
        if rec is None:
            return rc, error or "the gang record disappeared"
        others = [m for m in rec.members if m.agent != a.id]
        if any(m.handed_back for m in others):
            job.handed_back = True
        if rc == 0 and all(m.exit_code == 0 for m in others):
            return 0, None
        if rc != 0 and not job.gang_stop_reason:
            return rc, error
        failed = next((m for m in others if m.exit_code not in (0, None) and not m.handed_back), None)
        if failed is not None:
            return (
                failed.exit_code,
                f"node {failed.node_rank} ({failed.agent}) failed: {failed.error or failed.exit_code}",
            )
        missing = next((m for m in others if m.exit_code is None), None)
        if missing is not None:
            return None, f"node {missing.node_rank} ({missing.agent}) never reported an outcome"
        return rc if rc != 0 else 1, error or job.gang_stop_reason


def _host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr
