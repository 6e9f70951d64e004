"""The README's one command: ``trl-nats serve --embedded`` brings up NATS, an agent and the API, trains a
job through the SDK, and leaves nothing running after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from support import processes_matching
from test_openai_api import WAIT_S, dpo_lines, upload, wait_job

from trl_nats.ports import free_port

pytestmark = pytest.mark.integration


def test_serve_embedded_trains_a_job_and_stops_cleanly(tmp_path: Path, tiny_model: Path) -> None:
    port = free_port()
    state = tmp_path / "serve-state"
    log = open(tmp_path / "serve.log", "wb")
    cmd = [sys.executable, "-m", "trl_nats.cli", "serve", "--embedded", "--port", str(port)]
    cmd += ["--state-dir", str(state), "--device", "cpu", "--slots", "1", "--set", "max_length=128"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0, timeout=60)
        deadline = time.monotonic() + 180
        while True:
            try:
                client.files.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
        f = upload(client, "prefs.jsonl", dpo_lines(4))
        job = client.fine_tuning.jobs.create(
            model=str(tiny_model),
            training_file=f.id,
            method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
        )
        assert job.organization_id == "local"  # no keys configured: the loopback namespace
        done = wait_job(client, job.id)
        assert done.status == "succeeded", (done.error, (tmp_path / "serve.log").read_text()[-3000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "no API key configured: serving loopback callers only" in text
    assert f"http://127.0.0.1:{port}/v1" in text
    assert processes_matching(str(state)) == []  # the agent and nats-server went with it
