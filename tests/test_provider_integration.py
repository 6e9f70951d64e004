"""remote::trl_nats through a real ``llama stack run``, a real nats-server and a real agent.

One stack per module (the same EmbeddedStack the demo runs): nats-server,
``llama stack run`` on loopback with the provider, and a CPU agent with two
process slots, training a tiny model built here. Every call goes through
``llama-stack-client`` 0.6.1; its job.status/artifacts/cancel hit removed
paths, so those three use the raw routes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import llama_stack_client
import psutil
import pytest
from llama_stack_client import LlamaStackClient
from support import (
    REPO,
    WAIT_S,
    assert_loads,
    ended,
    model_dir,
    poll_status,
    processes_matching,
    training_processes,
)
from trl_nats_provider.embedded import EmbeddedStack, shipped_dataset
from trl_nats_provider.stack import SHIPPED_RUN_CONFIG, LlamaStackServer

from trl_nats.client import Client
from trl_nats.ports import free_port
from trl_nats.settings import NatsSettings

pytestmark = pytest.mark.integration


# -- helpers ------------------------------------------------------------------------------


def rows_of(name: str, n: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in shipped_dataset(name).read_text().splitlines()[:n]]


def register(client: LlamaStackClient, dataset_id: str, rows: list[dict[str, Any]]) -> None:
    if dataset_id not in {d.identifier for d in client.beta.datasets.list()}:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the 0.6.1 client marks datasets deprecated
            client.beta.datasets.register(
                dataset_id=dataset_id, purpose="post-training/messages", source={"type": "rows", "rows": rows}
            )


def training_config(dataset_id: str, steps: int = 4, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "n_epochs": epochs,
        "max_steps_per_epoch": steps,
        "data_config": {"dataset_id": dataset_id, "batch_size": 2, "shuffle": True, "data_format": "instruct"},
        "optimizer_config": {"optimizer_type": "adamw", "lr": 5e-4, "weight_decay": 0.0, "num_warmup_steps": 0},
        "dtype": "fp32",
        **extra,
    }


def preference_optimize(client: LlamaStackClient, job_uuid: str, model: Path, dataset_id: str, **kw: Any):
    beta = kw.pop("beta", 0.1)
    loss_type = kw.pop("loss_type", "sigmoid")
    return client.alpha.post_training.preference_optimize(
        job_uuid=job_uuid,
        finetuned_model=str(model),
        algorithm_config={"beta": beta, "loss_type": loss_type},
        training_config=kw.pop("training_config", None) or training_config(dataset_id, **kw),
        hyperparam_search_config={},
        logger_config={},
    )


def status(client: LlamaStackClient, job_uuid: str) -> dict[str, Any]:
    return client.get(f"/v1alpha/post-training/jobs/{job_uuid}/status", cast_to=object)


def artifacts(client: LlamaStackClient, job_uuid: str) -> dict[str, Any]:
    return client.get(f"/v1alpha/post-training/jobs/{job_uuid}/artifacts", cast_to=object)


def cancel(client: LlamaStackClient, job_uuid: str) -> Any:
    return client.post(f"/v1alpha/post-training/jobs/{job_uuid}/cancel", cast_to=object)


def job_ids(client: LlamaStackClient) -> list[str]:
    return [j["job_uuid"] for j in client.get("/v1alpha/post-training/jobs", cast_to=object)["data"]]


def poll(client: LlamaStackClient, job_uuid: str, until, what: str) -> tuple[dict[str, Any], list[str]]:
    return poll_status(lambda j: status(client, j), job_uuid, until, what)


# -- the stack ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("llama-stack")
    # the agent starts later, in dpo_run, so the first job is seen waiting in the queue
    s = EmbeddedStack(state, slots=2, gpus_per_node=1, agent_args=["--heartbeat", "1", "--cancel-grace", "5"])
    s.start(with_agent=False)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(stack) -> LlamaStackClient:
    return LlamaStackClient(base_url=stack.url, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def agent(stack):
    return stack.start_agent()


@pytest.fixture(scope="module")
def dpo_run(stack, client, tiny_model) -> dict[str, Any]:
    """A DPO job submitted while no agent runs, resubmitted, then trained to the end once an agent starts."""
    register(client, "prefs", rows_of("preferences.jsonl", 48))
    idle = stack.agent is None or not stack.agent.running
    job = preference_optimize(client, "ls-dpo", tiny_model, "prefs", steps=4)
    queued = status(client, "ls-dpo")
    again = preference_optimize(client, "ls-dpo", tiny_model, "prefs", steps=4)
    stack.start_agent()
    final, seen = poll(client, "ls-dpo", ended, "the end")
    return {
        "job": job,
        "idle": idle,
        "queued": queued,
        "again": again,
        "final": final,
        "seen": [queued["status"], *seen],
    }


@pytest.fixture(scope="module")
def cancelled_run(client, agent, tiny_model) -> dict[str, Any]:
    """A long DPO job, cancelled once its torchrun is training."""
    register(client, "prefs", rows_of("preferences.jsonl", 48))
    preference_optimize(client, "ls-long", tiny_model, "prefs", steps=1000, epochs=200)
    running, _ = poll(
        client,
        "ls-long",
        lambda st: st["status"] == "in_progress" and st["resources_allocated"]["progress"]["step"] >= 1,
        "a training step",
    )
    pids_before = training_processes("ls-long")
    cancel(client, "ls-long")
    final, _ = poll(client, "ls-long", ended, "the cancel")
    deadline = time.monotonic() + 60
    while training_processes("ls-long") and time.monotonic() < deadline:
        time.sleep(0.5)
    return {"running": running, "pids_before": pids_before, "final": final, "pids_after": training_processes("ls-long")}


# -- preference_optimize ------------------------------------------------------------------------


def test_preference_optimize_is_queued_then_trains_to_completion(dpo_run):
    assert dpo_run["job"].job_uuid == "ls-dpo"
    if dpo_run["idle"]:  # true unless this test runs after others started the agent
        queued = dpo_run["queued"]
        assert queued["status"] == "scheduled" and queued["scheduled_at"] and queued["started_at"] is None
        assert queued["resources_allocated"]["node"] is None
    seen = [s for i, s in enumerate(dpo_run["seen"]) if i == 0 or dpo_run["seen"][i - 1] != s]
    if dpo_run["idle"]:
        assert seen == ["scheduled", "in_progress", "completed"], seen
    else:
        assert seen[-2:] == ["in_progress", "completed"], seen
    final = dpo_run["final"]
    assert final["status"] == "completed", final
    assert final["scheduled_at"] <= final["started_at"] <= final["completed_at"]


def test_status_names_the_node_and_gpus_and_checkpoints_carry_metrics(dpo_run):
    final = dpo_run["final"]
    res = final["resources_allocated"]
    assert res["node"] and res["nodes"][0]["agent"] == "agent-1"
    assert len(res["gpus"]) == 1 and res["requested"]["gpus_per_node"] == 1
    assert res["progress"]["step"] == res["progress"]["total_steps"] == 4
    assert final["checkpoints"], final
    with_metrics = [c for c in final["checkpoints"] if c["training_metrics"]]
    assert with_metrics, final["checkpoints"]
    assert all(isinstance(c["training_metrics"]["train_loss"], float) for c in with_metrics)
    assert all(c["post_training_job_id"] == "ls-dpo" and c["epoch"] >= 1 for c in final["checkpoints"])


def test_resubmitting_a_job_uuid_does_not_start_a_second_job(dpo_run, client, tiny_model):
    assert dpo_run["again"].job_uuid == "ls-dpo"
    # once it is over, the same request still answers with the same job, and starts nothing
    assert preference_optimize(client, "ls-dpo", tiny_model, "prefs", steps=4).job_uuid == "ls-dpo"
    assert job_ids(client).count("ls-dpo") == 1
    assert status(client, "ls-dpo")["completed_at"] == dpo_run["final"]["completed_at"]
    # another request under the same id is refused, naming what differs
    with pytest.raises(llama_stack_client.ConflictError, match=r"params.beta: 0.1 then 0.3"):
        preference_optimize(client, "ls-dpo", tiny_model, "prefs", steps=4, beta=0.3)


def test_completed_job_is_listed_and_its_checkpoints_load(dpo_run, client, stack, tmp_path):
    assert "ls-dpo" in job_ids(client)
    arts = artifacts(client, "ls-dpo")
    assert arts["job_uuid"] == "ls-dpo" and arts["checkpoints"]
    final = [c for c in arts["checkpoints"] if c["identifier"].endswith("/final")]
    assert final, arts
    for ckpt in arts["checkpoints"]:  # each where its path says: the stored copy, fetched from anywhere
        name = ckpt["identifier"].split("/")[-1]
        assert Path(model_dir(ckpt["path"], stack.nats_url, tmp_path / name), "config.json").exists(), ckpt
    assert_loads(final[0]["path"], stack.nats_url, tmp_path / "final-load")


async def test_the_jobs_events_and_record_are_plain_json_on_nats(dpo_run, stack):
    """What `nats sub 'trl.events.ls-dpo.>'` and `nats kv get trl_jobs ls-dpo` show (no nats CLI here)."""
    import nats

    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe("trl.events.ls-dpo.>", ordered_consumer=True)
        kinds: set[str] = set()
        try:
            while True:
                msg = await sub.next_msg(timeout=2)
                event = json.loads(msg.data)
                assert event["job_id"] == "ls-dpo"
                kinds.add(msg.subject.rsplit(".", 1)[1])
        except nats.errors.TimeoutError:
            pass
        assert {"status", "metrics", "checkpoint"} <= kinds, kinds
        kv = await js.key_value("trl_jobs")
        record = json.loads((await kv.get("ls-dpo")).value)
        assert record["state"] == "completed" and record["spec"]["labels"]["submitted_via"] == "llama-stack"
    finally:
        await nc.close()


def test_cancelling_a_long_job_stops_its_torchrun(cancelled_run, client):
    assert cancelled_run["running"]["status"] == "in_progress"
    assert cancelled_run["pids_before"], "expected the job's torchrun to be running before the cancel"
    assert cancelled_run["final"]["status"] == "cancelled", cancelled_run["final"]
    assert cancelled_run["final"]["completed_at"] is not None
    assert cancelled_run["pids_after"] == [], f"training processes left after cancel: {cancelled_run['pids_after']}"
    for pid in cancelled_run["pids_before"]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(llama_stack_client.ConflictError, match="already ended as cancelled"):
        cancel(client, "ls-long")
    with pytest.raises(llama_stack_client.NotFoundError, match="Training job 'no-such-job' not found"):
        cancel(client, "no-such-job")
    with pytest.raises(llama_stack_client.NotFoundError):
        status(client, "no-such-job")


# -- supervised_fine_tune -----------------------------------------------------------------------------


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_supervised_fine_tune_trains_to_completion(client, agent, tiny_model, lora, stack, tmp_path):
    register(client, "sft", rows_of("sft.jsonl", 32))
    job_uuid = f"ls-sft-{'lora' if lora else 'full'}"
    algorithm = (
        {
            "type": "LoRA",
            "lora_attn_modules": ["q_proj", "v_proj"],
            "apply_lora_to_mlp": False,
            "apply_lora_to_output": False,
            "rank": 4,
            "alpha": 8,
        }
        if lora
        else None
    )
    job = client.alpha.post_training.supervised_fine_tune(
        job_uuid=job_uuid,
        model=str(tiny_model),
        training_config=training_config("sft", steps=3),
        hyperparam_search_config={},
        logger_config={},
        **({"algorithm_config": algorithm} if algorithm else {}),
    )
    assert job.job_uuid == job_uuid
    final, seen = poll(client, job_uuid, ended, "the end")
    assert final["status"] == "completed", final
    assert seen[-1] == "completed", seen
    arts = artifacts(client, job_uuid)
    finals = [c for c in arts["checkpoints"] if c["identifier"].endswith("/final")]
    assert finals, arts
    assert_loads(finals[0]["path"], stack.nats_url, tmp_path / "final")
    metrics = finals[0]["training_metrics"]
    assert metrics is None or metrics["perplexity"] is None or metrics["perplexity"] > 1.0


# -- bad requests ---------------------------------------------------------------------------------------


def test_bad_requests_get_a_400_naming_the_problem_and_nothing_stops(stack, client, agent, tiny_model):
    register(client, "prefs", rows_of("preferences.jsonl", 48))
    bad_rows = rows_of("preferences.jsonl", 5)
    del bad_rows[3]["chosen"]
    register(client, "prefs-no-chosen", bad_rows)
    cases = {
        "missing dataset": (dict(dataset_id="never-registered"), "dataset 'never-registered' cannot be read"),
        "rows missing chosen": (dict(dataset_id="prefs-no-chosen"), "row 3: field 'chosen' is missing"),
        "negative beta": (dict(beta=-0.5), "algorithm_config.beta must be a number in (0, 100], got -0.5"),
        "unknown loss type": (
            dict(loss_type="wasserstein"),
            ("loss_type", "Input should be 'sigmoid', 'hinge', 'ipo'"),
        ),
        "kto_pair": (dict(loss_type="kto_pair"), "'kto_pair' is not supported"),
        "zero epochs": (dict(epochs=0), "training_config.n_epochs must be between 1 and 1000, got 0"),
    }
    for n, (name, (kw, expected)) in enumerate(cases.items()):
        kw = dict(kw)
        dataset_id = kw.pop("dataset_id", "prefs")
        with pytest.raises(llama_stack_client.BadRequestError) as exc:
            preference_optimize(client, f"ls-bad-{n}", tiny_model, dataset_id, **kw)
        assert exc.value.status_code == 400, name
        message = exc.value.body["error"]["message"]
        for text in (expected,) if isinstance(expected, str) else expected:
            assert text in message, f"{name}: {message}"
    assert not [j for j in job_ids(client) if j.startswith("ls-bad-")]
    assert stack.server.healthy() and stack.agent.running


async def test_agent_still_heartbeats_after_bad_requests(stack, agent):
    async with await Client.connect(NatsSettings(servers=[stack.nats_url])) as nats_client:
        agents = await nats_client.list_agents()
    assert [a.agent_id for a in agents] == ["agent-1"]


# -- the walkthrough, and a Llama Stack restart -------------------------------------------------------------


def test_walkthrough_runs_against_the_shipped_run_config(stack, client, agent, tiny_model, tmp_path):
    """The walkthrough's own commands: `llama stack run provider/trl_nats_provider/run.yaml` set by env.

    A second Llama Stack on the same NATS: it sees the other's jobs, and the other sees its job.
    """
    env = dict(os.environ, TRL_NATS_SERVERS=stack.nats_url, TRL_NATS_STACK_DIR=str(tmp_path / "stack"))
    shipped = LlamaStackServer(SHIPPED_RUN_CONFIG, port=free_port(), log_path=tmp_path / "stack.log", env=env)
    with shipped:
        out = subprocess.run(
            [
                sys.executable,
                str(REPO / "examples/llama_stack_walkthrough.py"),
                "--url",
                shipped.url,
                "--model",
                str(tiny_model),
                "--steps",
                "2",
                "--job-uuid",
                "ls-walkthrough",
            ],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "checkpoint ls-walkthrough/final" in out.stdout, out.stdout
        other = LlamaStackClient(base_url=shipped.url, max_retries=0)
        assert set(job_ids(client)) <= set(job_ids(other))
    assert status(client, "ls-walkthrough")["status"] == "completed"


def test_dpo_lora_setting_makes_every_preference_job_lora(stack, tiny_model, tmp_path):
    """``TRL_NATS_DPO_LORA`` on the shipped run config: preference_optimize (which has no LoRA field) stores the
    job on NATS with the operator's adapter. A second Llama Stack on the stack's NATS; the job is not trained."""
    from trl_nats.messages import LoraParams

    env = dict(
        os.environ,
        TRL_NATS_SERVERS=stack.nats_url,
        TRL_NATS_STACK_DIR=str(tmp_path / "stack"),
        TRL_NATS_DPO_LORA='{"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}',
    )
    server = LlamaStackServer(SHIPPED_RUN_CONFIG, port=free_port(), log_path=tmp_path / "stack.log", env=env)
    with server:
        lora_client = LlamaStackClient(base_url=server.url, max_retries=0, timeout=120)
        register(lora_client, "prefs-lora", rows_of("preferences.jsonl", 8))
        preference_optimize(lora_client, "ls-dpo-lora", tiny_model, "prefs-lora", steps=2)
        record = asyncio.run(_record(stack.nats_url, "ls-dpo-lora"))
        cancel(lora_client, "ls-dpo-lora")
        assert poll(lora_client, "ls-dpo-lora", ended, "the cancel")[0]["status"] == "cancelled"
    assert record.spec.params.lora == LoraParams(rank=4, alpha=8.0, target_modules=["q_proj", "v_proj"])


async def _record(nats_url: str, job_uuid: str):
    async with await Client.connect(NatsSettings(servers=[nats_url])) as nats_client:
        return await nats_client.job(job_uuid).status()


def test_restarted_llama_stack_still_reads_both_jobs(stack, client, dpo_run, cancelled_run):
    """Restarted with the providers.d declaration (external_providers_dir) instead of module:."""
    before = artifacts(client, "ls-dpo")
    stack.restart_llama_stack(declare="providers_dir")
    assert "external_providers_dir" in stack.server.config_path.read_text()
    assert status(client, "ls-dpo")["status"] == "completed"
    assert status(client, "ls-long")["status"] == "cancelled"
    assert artifacts(client, "ls-dpo") == before
    assert {"ls-dpo", "ls-long"} <= set(job_ids(client))
    assert "prefs" in {d.identifier for d in client.beta.datasets.list()}


# -- the demo: the README's command ------------------------------------------------------------------------


def _demo(state: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "trl_nats_provider.demo", "--state-dir", str(state), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _left_behind(state: Path) -> list[str]:
    """Processes of the demo still alive (nats-server, agent, llama stack, torchrun all name the state dir)."""
    out = []
    for pid in processes_matching(str(state)):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(" ".join(proc.cmdline())[:160])
        except psutil.Error:
            continue
    return out


def test_demo_trains_through_llama_stack_and_stops_everything(tmp_path):
    demo = _demo(tmp_path / "demo", "--steps", "3")
    out, _ = demo.communicate(timeout=WAIT_S)
    assert demo.returncode == 0, out
    assert "preference_optimize -> job demo-dpo-" in out and "completed on node" in out, out
    assert re.search(r"step [123]\b", out) and "/final" in out, out
    assert "stopped Llama Stack, the agent and nats-server" in out
    assert _left_behind(tmp_path / "demo") == []


def test_demo_on_ctrl_c_cancels_the_job_and_stops_everything(tmp_path):
    demo = _demo(tmp_path / "demo", "--steps", "1000")
    lines = []
    assert demo.stdout is not None
    for line in demo.stdout:
        lines.append(line)
        if "in_progress" in line:
            break
    else:
        raise AssertionError("the demo ended before its job started:\n" + "".join(lines))
    demo.send_signal(signal.SIGINT)
    out, _ = demo.communicate(timeout=WAIT_S)
    assert demo.returncode == 130, "".join(lines) + out
    assert "interrupted: cancelling the job" in out and "stopped Llama Stack" in out, out
    deadline = time.monotonic() + 60
    while _left_behind(tmp_path / "demo") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _left_behind(tmp_path / "demo") == []
