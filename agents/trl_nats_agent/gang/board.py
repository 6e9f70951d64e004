"""The gangs KV bucket as this agent sees it: a watched view of every gang record, and CAS writes.

``view`` maps job id -> (record, revision), kept current by :meth:`Board.follow`;
``changed()`` wakes whoever waits on :meth:`Board.wait_change`. A write goes
through :meth:`Board.cas` with a pure change from ``protocol.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from trl_nats import retry
from trl_nats.messages import BadMessage, GangRecord, decode, encode, now
from trl_nats_agent.gang import protocol

log = logging.getLogger("trl_nats_agent.gang")

# how often forming and running gangs re-check clocks and liveness between watch updates
TICK_S = 0.25


class Board:
    def __init__(self, kv: KeyValue, agent_id: str, alive: Callable[[str], Awaitable[bool]]) -> None:
        self.kv = kv
        self.agent_id = agent_id
        self.alive = alive  # is this agent's heartbeat fresh?
        self.view: dict[str, tuple[GangRecord, int]] = {}
        self._tick = asyncio.Event()

    def changed(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def wait_change(self, timeout: float = TICK_S) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tick.wait(), timeout)

    def records(self) -> list[GangRecord]:
        return [rec for rec, _ in self.view.values()]

    def mine(self, job_id: str) -> GangRecord | None:
        """Our gang's record while we are still in it (a new attempt's gang is not ours)."""
        entry = self.view.get(job_id)
        if entry is None or entry[0].member(self.agent_id) is None:
            return None
        return entry[0]

    def remember(self, rec: GangRecord, revision: int) -> None:
        self.view[rec.job_id] = (rec, revision)
        self.changed()

    # -- the watch ---------------------------------------------------------------------
    async def follow(self, active: Callable[[], bool], on_round: Callable[[], Awaitable[None]]) -> None:
        """Keep ``view`` current while ``active()``; ``on_round`` runs after every update or quiet spell."""
        while active():
            try:
                watcher = await self.kv.watchall()
            except Exception as exc:  # broker restarting
                log.info("gang watch not started (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            try:
                while active():
                    try:
                        entry = await watcher.updates(timeout=0.5)
                    except Exception:  # nats TimeoutError: nothing changed
                        entry = None
                    if isinstance(entry, KeyValue.Entry):
                        self._apply(entry)
                    await on_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gang watch failed; restarting it")
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()

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
        self.changed()

    # -- writes --------------------------------------------------------------------------
    async def update(self, rec: GangRecord, last: int) -> int:
        """Write ``rec`` if the record is still at revision ``last`` (KeyWrongLastSequenceError if not)."""
        revision = await retry.kv_update(self.kv, rec.job_id, encode(rec), last, what=f"gang {rec.job_id}")
        self.remember(rec, revision)
        return revision

    async def cas(
        self, job_id: str, change: Callable[[GangRecord], GangRecord | None], retries: int = 50
    ) -> GangRecord | None:
        """Read-modify-write the gang record; ``change`` returns the new record or None to leave it."""
        for _ in range(retries):
            try:
                entry = await self.kv.get(job_id)
            except KeyNotFoundError:
                return None
            if not entry.value:
                return None
            new = change(decode(entry.value, GangRecord))
            if new is None:
                return None
            new = msgspec.structs.replace(new, updated_at=now())
            try:
                await self.update(new, entry.revision)
            except KeyWrongLastSequenceError:
                continue
            return new
        raise RuntimeError(f"gang {job_id}: gave up after {retries} conflicting writes")

    async def create(self, gang: GangRecord) -> int | None:
        """Write a new forming record; replace a stale one; None if another leader is active."""
        try:
            return await retry.kv_create(self.kv, gang.job_id, encode(gang), what=f"gang {gang.job_id}")
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(gang.job_id)
        except KeyNotFoundError:
            entry = None
        if entry is None or not entry.value:
            try:
                return await retry.kv_create(self.kv, gang.job_id, encode(gang), what=f"gang {gang.job_id}")
            except KeyWrongLastSequenceError:
                return None
        try:
            old = decode(entry.value, GangRecord)
            alive = old.leader == self.agent_id or await self.alive(old.leader)
            replace = protocol.stale(old, self.agent_id, now(), alive)
        except BadMessage:
            replace = True
        if not replace:
            log.info("gang %s is led by %s already; leaving the job to it", gang.job_id, old.leader)
            return None
        try:
            return await retry.kv_update(self.kv, gang.job_id, encode(gang), entry.revision, what=f"gang {gang.job_id}")
        except KeyWrongLastSequenceError:
            return None

    async def delete(self, job_id: str) -> None:
        """Remove our own gang's record (only the leader does)."""
        entry = self.view.get(job_id)
        if entry is None or entry[0].leader != self.agent_id:
            return
        with contextlib.suppress(Exception):
            await self.kv.delete(job_id, last=entry[1])
        self.view.pop(job_id, None)
        self.changed()
