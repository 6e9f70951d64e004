"""The trl-nats CLI as a person types it, against a real nats-server and a real agent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import NOOP

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "trl_nats.cli"]


def run(env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"trl-nats {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_submit_watch_jobs_status_agents(env_for, start_agent, tmp_path: Path):
    start_agent("node-1", slots=2, recipe=NOOP)
    env = env_for()
    data = tmp_path / "prefs.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) + "\n" for i in range(3))
    )
    out = run(
        env,
        "submit",
        "--model",
        "m",
        "--dataset",
        str(data),
        "--job-id",
        "cli-1",
        "--set",
        "beta=0.2",
        "--set",
        "noop_ignored=1",
        check=False,
    )
    assert out.returncode == 2 and "--set noop_ignored: unknown parameter" in out.stderr

    out = run(
        env,
        "submit",
        "--model",
        "m",
        "--dataset",
        str(data),
        "--job-id",
        "cli-1",
        "--set",
        "beta=0.2",
        "--gpus",
        "2",
        "--watch",
    )
    assert "submitted cli-1" in out.stdout and "[completed]" in out.stdout and "final model:" in out.stdout

    jobs = run(env, "jobs").stdout
    assert "cli-1" in jobs and "completed" in jobs and "node-1" in jobs
    record = json.loads(run(env, "status", "cli-1", "--json").stdout)
    assert record["state"] == "completed" and record["spec"]["params"]["beta"] == 0.2
    assert record["spec"]["resources"]["gpus_per_node"] == 2
    assert "state      completed" in run(env, "status", "cli-1").stdout

    events = [json.loads(line) for line in run(env, "watch", "cli-1", "--json").stdout.splitlines()]
    assert events[0]["state"] == "scheduled" and events[-1]["state"] == "completed"

    agents = run(env, "agents").stdout
    assert "node-1" in agents and "2/2" in agents
    assert json.loads(run(env, "agents", "--json").stdout.splitlines()[0])["agent_id"] == "node-1"


def test_bad_input_gets_a_clear_error_and_exit_code_2(env_for, tmp_path: Path):
    env = env_for()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c"}\n')
    cases = {
        ("submit", "--model", "m", "--dataset", str(bad)): "row 1: field 'rejected' is missing",
        ("submit", "--model", "m", "--dataset", str(tmp_path / "none.jsonl")): "does not exist",
        ("submit", "--model", "m", "--set", "beta=-1"): "Expected `float` > 0.0",
        ("submit", "--model", "m", "--set", "loss_type=kto_pair"): "loss_type 'kto_pair' is not supported",
        ("submit", "--model", "m", "--job-id", "../../etc"): "job_id",
        ("status", "no-such-job"): "no job with id 'no-such-job'",
        ("cancel", "no-such-job"): "no job with id 'no-such-job'",
    }
    for args, message in cases.items():
        out = run(env, *args, check=False)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_unreachable_server_says_how_to_fix_it(tmp_path: Path):
    env = dict(os.environ, TRL_NATS_SERVERS="nats://127.0.0.1:1", TRL_NATS_CONNECT_TIMEOUT="1")
    out = run(env, "jobs", check=False)
    assert out.returncode == 2
    assert "cannot connect to NATS at nats://127.0.0.1:1" in out.stderr and "trl-nats up" in out.stderr


def test_up_runs_a_server_and_an_agent_until_interrupted(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    up = subprocess.Popen(
        [*CLI, "up", "--port", str(port), "--state-dir", str(tmp_path / "up"), "--device", "cpu", "--slots", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("export TRL_NATS_SERVERS="):
                break
        assert f"nats://127.0.0.1:{port}" in "".join(lines)
        env = dict(os.environ, TRL_NATS_SERVERS=f"nats://127.0.0.1:{port}")
        for _ in range(100):
            agents = json.loads("[" + ",".join(run(env, "agents", "--json").stdout.splitlines()) + "]")
            if agents:
                break
            time.sleep(0.3)
        assert len(agents) == 1 and agents[0]["device"] == "cpu" and len(agents[0]["gpus"]) == 1
    finally:
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=120)[0]
    assert up.returncode == 0 and "stopped" in rest
