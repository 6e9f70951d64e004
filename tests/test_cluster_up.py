"""`trl-nats up --cluster 3`: three nats-server nodes as one JetStream cluster, streams at R3, in one command."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import pytest
from support import processes_matching

from trl_nats.client import Client
from trl_nats.settings import NatsSettings

pytestmark = pytest.mark.integration


async def test_up_cluster_3_runs_a_three_node_cluster_with_replicated_streams(tmp_path):
    state = tmp_path / "up"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trl_nats.cli", "up", "--cluster", "3", "--no-agent", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        export = ""
        while not export:
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line, f"trl-nats up exited with {proc.wait()} before printing its servers"
            export = line if line.startswith("export TRL_NATS_SERVERS=") else ""
        found = re.match(r"export TRL_NATS_SERVERS=(\S+) TRL_NATS_REPLICAS=(\d)", export)
        assert found, export
        servers, replicas = found[1].split(","), int(found[2])
        assert len(servers) == 3 and replicas == 3
        client = await Client.connect(NatsSettings(servers=servers, replicas=replicas))
        try:
            for stream in (client.names.jobs_stream, client.names.events_stream, f"KV_{client.names.jobs_bucket}"):
                info = await client.js.stream_info(stream)
                assert info.config.num_replicas == 3
                assert info.cluster.leader and len(info.cluster.replicas) == 2, info.cluster
        finally:
            await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert processes_matching(str(state)) == [], "a nats-server node outlived trl-nats up"
