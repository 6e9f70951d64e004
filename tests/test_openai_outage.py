"""The gateway keeps no state of its own and outlives NATS going away: a real nats-server stopped and
started under it, and the gateway itself replaced by a new process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from test_openai_api import dpo_lines, upload

from trl_nats.ports import free_port
from trl_nats.server import EmbeddedNats

pytestmark = pytest.mark.integration


def start_gateway(nats_url: str, log: Path) -> tuple[subprocess.Popen, openai.OpenAI]:
    port = free_port()
    env = dict(os.environ, TRL_NATS_SERVERS=nats_url, TRL_NATS_REQUEST_TIMEOUT="2")
    out = open(log, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trl_nats_provider.openai", "--port", str(port)], env=env, stdout=out, stderr=out
    )
    out.close()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0, timeout=60)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.files.list()
            return proc, client
        except openai.APIConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_nats_outage_is_a_503_and_a_new_gateway_sees_everything(tmp_path: Path) -> None:
    nats = EmbeddedNats(tmp_path / "nats").start()
    log = tmp_path / "gateway.log"
    proc, client = start_gateway(nats.url, log)
    try:
        f = upload(client, "prefs.jsonl", dpo_lines(4))
        job = client.fine_tuning.jobs.create(model="/models/unused", training_file=f.id, method={"type": "dpo"})
        nats.stop()
        with pytest.raises(openai.APIStatusError) as err:
            client.fine_tuning.jobs.list()
        assert err.value.status_code == 503, err.value.response.text
        assert err.value.body["code"] == "service_unavailable" and "try again" in err.value.body["message"]
        assert proc.poll() is None  # the service is still up
        nats.restart()
        deadline = time.monotonic() + 120
        while True:
            try:
                assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
                break
            except openai.APIStatusError as exc:
                assert exc.status_code == 503 and time.monotonic() < deadline, exc
                time.sleep(0.5)
        stop(proc)
        proc, client = start_gateway(nats.url, log)  # a new process: everything is read from NATS
        assert client.files.retrieve(f.id).status == "processed"
        assert [j.id for j in client.fine_tuning.jobs.list().data] == [job.id]
        assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    finally:
        stop(proc)
        nats.stop()
