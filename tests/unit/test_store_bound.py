"""A record write given a longer bound than the store's rides out a longer election (trl_nats/retry.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import nats.js.errors
import pytest

from trl_nats.messages import DatasetRef, JobRecord, JobSpec, JobState, decode, encode
from trl_nats.retry import NotWritten
from trl_nats.store import JobStore

SHA = "0" * 64


class ElectingKV:
    """A jobs bucket whose stream has no leader for the first ``outage`` writes."""

    def __init__(self, record: JobRecord, outage: int) -> None:
        self.value, self.revision, self.outage = encode(record), 1, outage

    async def get(self, key):
        return SimpleNamespace(value=self.value, revision=self.revision)

    async def update(self, key, value, last):
        if self.outage > 0:
            self.outage -= 1
            raise nats.js.errors.NoStreamResponseError
        assert last == self.revision
        self.value, self.revision = value, self.revision + 1
        return self.revision


def _kv(outage: int) -> ElectingKV:
    spec = JobSpec(job_id="j1", model="m", dataset=DatasetRef(object="sha256-" + SHA, sha256=SHA, rows=1, bytes=1))
    return ElectingKV(JobRecord(job_id="j1", spec=spec, state=JobState.in_progress, owner="a1", attempt=1), outage)


def _finish(store: JobStore, **kw):
    return asyncio.run(store.transition("j1", JobState.completed, owner="a1", attempt=1, **kw))


def test_the_store_bound_gives_up_on_a_long_election():
    with pytest.raises(NotWritten, match="j1 -> completed"):
        _finish(JobStore(_kv(outage=4), write_bound_s=0.05))


def test_a_longer_bound_for_one_write_rides_it_out():
    kv = _kv(outage=4)
    assert _finish(JobStore(kv, write_bound_s=0.05), bound_s=30).state is JobState.completed
    assert decode(kv.value, JobRecord).state is JobState.completed
