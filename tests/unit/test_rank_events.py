"""The lines a job's rank 0 sends its agent: typed, and turned into the job's NATS events by the relay."""

from __future__ import annotations

import json

import msgspec
import pytest

from trl_nats.messages import (
    BadMessage,
    CheckpointEvent,
    LogEvent,
    MetricsEvent,
    RankCheckpoint,
    RankLog,
    RankMetrics,
    encode,
    rank_event,
)

WHO = {"job_id": "j1", "attempt": 2, "node": "node-a"}


def test_what_rank_0_encodes_is_what_the_relay_decodes():
    sent = [
        RankMetrics(step=3, total_steps=10, epoch=0.5, metrics={"loss": 0.7}),
        RankCheckpoint(step=3, path="/out/checkpoint-3", epoch=0.5, metrics={"loss": 0.7}, final=True),
        RankLog(line="hello", level="warning"),
    ]
    for event in sent:
        line = encode(event)
        assert json.loads(line)["kind"] in ("metrics", "checkpoint", "log")
        assert rank_event(json.loads(line)) == event


def test_the_relay_fills_in_job_attempt_and_node():
    metrics = rank_event({"kind": "metrics", "step": 3, "total_steps": 10, "metrics": {"loss": 0.5}}).event(**WHO)
    assert isinstance(metrics, MetricsEvent)
    assert (metrics.job_id, metrics.attempt, metrics.step, metrics.total_steps) == ("j1", 2, 3, 10)
    ckpt = rank_event({"kind": "checkpoint", "step": 4, "path": "/o/checkpoint-4", "final": True}).event(**WHO)
    assert isinstance(ckpt, CheckpointEvent)
    assert (ckpt.checkpoint.node, ckpt.checkpoint.path, ckpt.checkpoint.final) == ("node-a", "/o/checkpoint-4", True)
    log = rank_event({"kind": "log", "line": "x"}).event(**WHO)
    assert isinstance(log, LogEvent) and (log.level, log.line) == ("info", "x")


def test_sloppy_but_usable_lines_are_kept():
    raw = json.loads('{"kind": "metrics", "step": 1, "metrics": {"loss": 1.0, "nan": NaN, "flag": true, "s": "x"}}')
    assert rank_event(raw).event(**WHO).metrics == {"loss": 1.0}
    assert rank_event({"kind": "log", "line": "x", "level": "shout", "extra": 1}).event(**WHO).level == "info"
    assert len(rank_event({"kind": "log", "line": "y" * 10_000}).event(**WHO).line) == 4000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"kind": "exec", "cmd": "rm -rf /"}, "kind"),
        ({"kind": "metrics", "step": "abc"}, "step"),
        ({"kind": "metrics", "step": -1}, "step"),
        ({"kind": "checkpoint", "step": 3}, "path"),
        ([1, 2], "object"),
        ({"step": 1}, "kind"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(raw, reason):
    with pytest.raises(BadMessage, match=reason):
        rank_event(raw)


def test_the_relay_socket_turns_encoded_rank_events_into_job_events_and_drops_bad_lines(tmp_path, caplog):
    """The agent's EventSocket over a real Unix socket: what rank 0 encodes arrives typed, in order."""
    import asyncio
    import logging

    from trl_nats_agent.relay import EventSocket

    sent = [
        RankMetrics(step=1, total_steps=2, epoch=0.5, metrics={"loss": 0.9}),
        RankCheckpoint(step=1, path="/out/checkpoint-1", epoch=0.5),
        RankLog(line="done", level="warning"),
    ]

    async def run() -> list:
        got: list = []
        sock = EventSocket(tmp_path / "ev.sock", on_event=got.append, **WHO)
        await sock.start()
        try:
            _, writer = await asyncio.open_unix_connection(str(tmp_path / "ev.sock"))
            writer.write(encode(sent[0]) + b"\n" + b'{"kind": "exec"}\n' + b"\n".join(encode(e) for e in sent[1:]))
            writer.write(b"\n")
            await writer.drain()
            writer.close()
            for _ in range(600):
                if len(got) == len(sent):
                    break
                await asyncio.sleep(0.01)
        finally:
            await sock.close()
        return got

    with caplog.at_level(logging.WARNING, logger="trl_nats_agent.relay"):
        got = asyncio.run(run())

    def untimed(e):  # the relay stamps when it relayed
        if isinstance(e, CheckpointEvent):
            e = msgspec.structs.replace(e, checkpoint=msgspec.structs.replace(e.checkpoint, created_at=0.0))
        return msgspec.structs.replace(e, ts=0.0)

    assert [untimed(e) for e in got] == [untimed(e.event(**WHO)) for e in sent]
    assert [type(e) for e in got] == [MetricsEvent, CheckpointEvent, LogEvent]
    assert any("dropping a line from rank 0: bad exec event" in r.getMessage() for r in caplog.records)
