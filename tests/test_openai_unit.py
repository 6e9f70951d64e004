"""The OpenAI gateway's pure rules, table-driven: request checks, "auto" hyperparameters, the objects
it answers with, list pages, API keys, and `trl-nats serve` without the gateway installed.

Their integration twin is tests/test_openai_api.py (the real SDK against the real service).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from trl_nats_provider.openai import objects
from trl_nats_provider.openai.errors import APIError
from trl_nats_provider.openai.files import check
from trl_nats_provider.openai.keys import LOCAL_NAMESPACE, KeyConfigError, KeyRing
from trl_nats_provider.openai.requests import (
    auto_batch_size,
    auto_learning_rate_multiplier,
    auto_n_epochs,
    parse_job_request,
    resolve_hyperparameters,
    training_values,
)

from trl_nats.messages import (
    Checkpoint,
    CheckpointEvent,
    DatasetRef,
    JobKind,
    JobRecord,
    JobSpec,
    JobState,
    LogEvent,
    MetricsEvent,
    StatusEvent,
)

BASE = {"model": "/models/tiny", "training_file": "file-abc"}


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ([], None, "JSON object"),
        ({"training_file": "file-abc"}, "model", "Missing required parameter"),
        ({**BASE, "model": 3}, "model", "non-empty string"),
        ({**BASE, "training_file": "x.jsonl"}, "training_file", "files.create"),
        ({**BASE, "validation_file": "nope"}, "validation_file", "file id"),
        ({**BASE, "method": {"type": "reinforcement"}}, "method.type", "not offered"),
        ({**BASE, "method": {"type": "dpo", "supervised": {}}}, "method.supervised", "does not take"),
        (
            {**BASE, "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 2.5}}}},
            "method.dpo.hyperparameters.beta",
            "at most 2",
        ),
        (
            {**BASE, "method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": "3"}}}},
            "method.dpo.hyperparameters.n_epochs",
            "whole number",
        ),
        ({**BASE, "hyperparameters": {"beta": 0.1}}, "hyperparameters.beta", "not taken by a supervised job"),
        ({**BASE, "suffix": "a/b"}, "suffix", "letters"),
        ({**BASE, "seed": True}, "seed", "whole number"),
        ({**BASE, "metadata": {"k": ["v"]}}, "metadata", "string"),
        ({**BASE, "integrations": [{"type": "wandb"}]}, "integrations", "not offered"),
        ({**BASE, "learning_rate": 1e-5}, "learning_rate", "unknown parameter"),
    ],
)
def test_bad_job_requests_name_the_field(body, param, needle) -> None:
    with pytest.raises(APIError) as err:
        parse_job_request(body)
    assert err.value.status == 400 and err.value.param == param
    assert needle in err.value.message


def test_a_job_request_keeps_what_was_sent() -> None:
    req = parse_job_request(
        {
            **BASE,
            "validation_file": "file-val",
            "suffix": "team-a",
            "seed": 3,
            "metadata": {"team": "a"},
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3, "n_epochs": "auto", "batch_size": 4}}},
        }
    )
    assert req.kind is JobKind.dpo and req.validation_file == "file-val" and req.seed == 3
    assert req.hyperparameters == {"beta": 0.3, "n_epochs": "auto", "batch_size": 4}
    assert parse_job_request(BASE).kind is JobKind.sft  # OpenAI's default method
    legacy = parse_job_request({**BASE, "hyperparameters": {"n_epochs": 2}})
    assert legacy.kind is JobKind.sft and legacy.hyperparameters == {"n_epochs": 2}


@pytest.mark.parametrize(
    ("rows", "epochs", "batch"),
    [(1, 25, 1), (8, 13, 1), (34, 3, 1), (100, 3, 1), (1000, 3, 8), (5000, 3, 16), (10_000, 2, 16), (100_000, 1, 16)],
)
def test_auto_rule_from_data_size(rows, epochs, batch) -> None:
    assert auto_n_epochs(rows) == epochs
    assert auto_batch_size(rows) == batch
    resolved = resolve_hyperparameters(JobKind.dpo, {"n_epochs": "auto"}, rows)
    assert resolved == {
        "beta": 0.1,
        "batch_size": batch,
        "learning_rate_multiplier": auto_learning_rate_multiplier(batch),
        "n_epochs": epochs,
    }


def test_sent_values_win_over_auto_and_map_to_training_params() -> None:
    resolved = resolve_hyperparameters(JobKind.sft, {"batch_size": 6, "learning_rate_multiplier": 0.5}, 1000)
    assert resolved == {"batch_size": 6, "learning_rate_multiplier": 0.5, "n_epochs": 3}
    values = training_values(JobKind.sft, resolved, processes=4)
    assert values == {"epochs": 3, "per_device_batch_size": 2, "learning_rate": pytest.approx(1e-5)}
    assert auto_learning_rate_multiplier(8) == 1.0 and auto_learning_rate_multiplier(1) == 0.3536


def _record(state: JobState, **fields) -> JobRecord:
    spec = JobSpec(
        job_id="ftjob-1",
        kind=JobKind.dpo,
        model="/m",
        dataset=DatasetRef(object="sha256-" + "0" * 64, sha256="0" * 64, rows=8, bytes=10),
        labels={
            objects.NAMESPACE: "alice",
            objects.TRAINING_FILE: "file-t",
            objects.HYPERPARAMETERS: json.dumps(
                {"beta": 0.1, "batch_size": 2, "learning_rate_multiplier": 1, "n_epochs": 1}
            ),
            objects.METADATA: json.dumps({"team": "a"}),
        },
    )
    return JobRecord(job_id="ftjob-1", spec=spec, state=state, submitted_at=100.0, **fields)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (JobState.scheduled, "queued"),
        (JobState.in_progress, "running"),
        (JobState.completed, "succeeded"),
        (JobState.failed, "failed"),
        (JobState.cancelled, "cancelled"),
    ],
)
def test_status_mapping(state, status) -> None:
    assert objects.job_object(_record(state))["status"] == status


def test_job_object_fields_as_openai_fills_them() -> None:
    final = Checkpoint(step=4, epoch=1.0, path="/out/final", node="n1", final=True, created_at=140.0)
    mid = Checkpoint(
        step=2,
        epoch=0.5,
        path="/out/checkpoint-2",
        node="n1",
        location="nats://trl_artifacts/j1/checkpoint-2",
        created_at=120.0,
    )
    done = objects.job_object(
        _record(JobState.completed, finished_at=150.5, checkpoints=[mid, final], last_metrics={"num_tokens": 512.0})
    )
    assert done["fine_tuned_model"] == "/out/final" and done["finished_at"] == 150 and done["trained_tokens"] == 512
    assert done["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"beta": 0.1, "batch_size": 2, "learning_rate_multiplier": 1, "n_epochs": 1}},
    }
    assert "beta" not in done["hyperparameters"] and done["metadata"] == {"team": "a"} and done["error"] is None
    failed = objects.job_object(_record(JobState.failed, error="training exited with code 1"))
    assert failed["error"] == {"code": "training_failed", "message": "training exited with code 1", "param": None}
    assert failed["fine_tuned_model"] is None and failed["trained_tokens"] is None
    ckpts = objects.checkpoint_objects(_record(JobState.completed, checkpoints=[mid, final]))
    assert [c["step_number"] for c in ckpts] == [4, 2]
    # the stored copy, fetchable by anyone
    assert ckpts[1]["fine_tuned_model_checkpoint"] == "nats://trl_artifacts/j1/checkpoint-2"


def test_events_as_openai_event_objects() -> None:
    status = objects.event_object(5, StatusEvent(job_id="j", attempt=1, state=JobState.failed, message="boom", ts=9.0))
    assert status == {
        "id": "ftevent-5",
        "object": "fine_tuning.job.event",
        "created_at": 9,
        "level": "error",
        "message": "Job failed: boom",
        "type": "message",
        "data": None,
    }
    m = objects.event_object(
        6,
        MetricsEvent(
            job_id="j",
            attempt=1,
            step=3,
            total_steps=8,
            metrics={"loss": 0.5, "rewards/margins": 0.2, "eval_loss": 0.7},
        ),
    )
    assert m["type"] == "metrics"
    assert m["data"] == {
        "step": 3,
        "total_steps": 8,
        "epoch": 0.0,
        "train_loss": 0.5,
        "reward_margin": 0.2,
        "valid_loss": 0.7,
    }
    ck = objects.event_object(
        7, CheckpointEvent(job_id="j", attempt=1, checkpoint=Checkpoint(step=2, epoch=0.5, path="/o/c2", node="n"))
    )
    assert ck["data"]["fine_tuned_model_checkpoint"] == "/o/c2"
    log = objects.event_object(8, LogEvent(job_id="j", attempt=1, level="warning", line="slow"))
    assert (log["level"], log["message"]) == ("warn", "slow")


def test_pages_follow_the_cursor() -> None:
    items = [{"id": f"x{i}"} for i in range(5)]
    first = objects.page(items, None, 2)
    assert [i["id"] for i in first["data"]] == ["x0", "x1"] and first["has_more"]
    last = objects.page(items, "x3", 2)
    assert [i["id"] for i in last["data"]] == ["x4"] and not last["has_more"]
    with pytest.raises(APIError) as err:
        objects.page(items, "gone", 2)
    assert err.value.param == "after"
    with pytest.raises(APIError):
        objects.parse_limit("0", 20)


def test_api_keys_name_namespaces(tmp_path) -> None:
    f = tmp_path / "keys"
    f.write_text("# comment\nalice:sk-alice-123456\nsk-anonymous-123456\n")
    ring = KeyRing.load(f, env="bob:sk-bob-1234567")
    assert ring.namespace("Bearer sk-alice-123456", "10.0.0.9") == "alice"
    assert ring.namespace("Bearer sk-bob-1234567", None) == "bob"
    assert ring.namespace("Bearer sk-anonymous-123456", "::1").startswith("key-")
    for header in (None, "Bearer ", "Basic sk-alice-123456", "Bearer sk-nope-1234567"):
        with pytest.raises(APIError) as err:
            ring.namespace(header, "127.0.0.1")
        assert err.value.status == 401
    open_ring = KeyRing.load(None, env="")
    assert open_ring.namespace(None, "127.0.0.1") == LOCAL_NAMESPACE
    with pytest.raises(APIError) as err:
        open_ring.namespace("Bearer anything", "192.168.1.4")
    assert err.value.status == 403 and "loopback" in err.value.message
    for bad in ("a b:sk-12345678", "alice:short"):
        with pytest.raises(KeyConfigError):
            KeyRing.load(None, env=bad)


def test_upload_check_names_line_and_field() -> None:
    good = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    accepted, error = check(good)
    assert error is None and set(accepted) == {JobKind.sft}
    bad = good + b'{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": []}\n'
    accepted, error = check(b'{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": "x"}\n')
    assert not accepted and error.startswith("not a dpo training file: line 1") and "non_preferred_output" in error
    accepted, error = check(bad)
    assert not accepted and "line 2" in error
    accepted, error = check(b"not json\n")
    assert not accepted and "line 1" in error and "JSON" in error


def test_serve_says_what_to_install_without_the_gateway(tmp_path) -> None:
    """A core-only install: the provider package is hidden, so `trl-nats serve` must say what to install."""
    hide = tmp_path / "sitecustomize.py"
    hide.write_text(
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'trl_nats_provider':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    import os

    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "trl_nats.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "pip install 'trl-nats-provider[openai]'" in proc.stderr


def test_serve_hands_the_connection_to_the_gateway_by_environment() -> None:
    from trl_nats.cli import build_parser
    from trl_nats.serve import gateway_command, gateway_env

    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "9000",
            "--user",
            "u",
            "--password",
            "secret",
            "--servers",
            "nats://a:1",
            "--set",
            "max_length=64",
        ]
    )
    cmd = gateway_command(args)
    assert "secret" not in " ".join(cmd)
    assert cmd[cmd.index("--port") + 1] == "9000" and cmd[cmd.index("--set") + 1] == "max_length=64"
    env = gateway_env(args, servers="nats://127.0.0.1:4333")  # --embedded: its own server wins
    assert env["TRL_NATS_PASSWORD"] == "secret" and env["TRL_NATS_USER"] == "u"
    assert env["TRL_NATS_SERVERS"] == "nats://127.0.0.1:4333"
    assert gateway_env(args)["TRL_NATS_SERVERS"] == "nats://a:1"


def test_a_file_record_write_rides_out_an_election() -> None:
    """An upload whose record write meets a stream with no leader is stored once the leader is back."""
    import asyncio
    from types import SimpleNamespace

    import nats.js.errors
    from trl_nats_provider.openai.files import FileStore

    from trl_nats.messages import DatasetRef

    class ElectingKV:
        def __init__(self) -> None:
            self.outage, self.stored = 2, {}

        async def create(self, key, value):
            if self.outage:
                self.outage -= 1
                raise nats.js.errors.NoStreamResponseError
            self.stored[key] = value
            return 1

    class Client:
        settings = SimpleNamespace(write_retry_s=30.0)
        nc = None

        async def upload_dataset(self, data):
            return DatasetRef(object="sha256-" + "0" * 64, sha256="0" * 64, rows=1, bytes=1)

    kv = ElectingKV()
    rows = b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
    record = asyncio.run(FileStore(Client(), kv).create("ns", "d.jsonl", "fine-tune", rows))
    assert kv.outage == 0 and list(kv.stored) == [f"ns.{record.id}"]
