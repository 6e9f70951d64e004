"""The OpenAI fine-tuning API through the official ``openai`` SDK, against the real service.

One stack per module: a real nats-server, a real CPU agent with two process slots training the
tiny model with the real recipes under torchrun, and the gateway as its own process
(``python -m trl_nats_provider.openai``: uvicorn on a free port) with two API keys. Jobs are tiny:
eight rows, one epoch, a few steps each.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support import SHIPPED as SHIPPED_PREFERENCES
from support import AgentProcess

from trl_nats.client import Client
from trl_nats.ports import free_port
from trl_nats.server import EmbeddedNats
from trl_nats.settings import NatsSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
ALICE = "sk-alice-0123456789abcdef"
BOB = "sk-bob-0123456789abcdef"
TERMINAL = ("succeeded", "failed", "cancelled")
WAIT_S = 600  # a hang guard only


def dpo_lines(n: int, start: int = 0) -> bytes:
    rows = [json.loads(x) for x in SHIPPED_PREFERENCES.read_text().splitlines()[start : start + n]]
    return "\n".join(
        json.dumps(
            {
                "input": {"messages": [{"role": "user", "content": r["prompt"]}]},
                "preferred_output": [{"role": "assistant", "content": r["chosen"]}],
                "non_preferred_output": [{"role": "assistant", "content": r["rejected"]}],
            }
        )
        for r in rows
    ).encode()


def sft_lines(n: int, start: int = 0) -> bytes:
    path = REPO / "trl_nats" / "data" / "sft.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()[start : start + n]]
    return "\n".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": r["prompt"]},
                    {"role": "assistant", "content": r["completion"]},
                ]
            }
        )
        for r in rows
    ).encode()


class Stack:
    def __init__(self, root: Path, model: Path) -> None:
        self.root = root
        self.model = str(model)
        self.nats = EmbeddedNats(root / "nats").start()
        self.env = dict(os.environ, TRL_NATS_SERVERS=self.nats.url, PYTHONUNBUFFERED="1", TRL_NATS_AGENT_TTL_S="5")
        self.agent = AgentProcess(self.env, root / "agent", slots=2, agent_id="openai-agent", extra=[])
        self.keys = root / "keys.txt"
        self.keys.write_text(f"# two teams\nalice:{ALICE}\nbob:{BOB}\n")
        self.log_path = root / "gateway.log"
        self._log = open(self.log_path, "wb")
        self.port, self.gateway = self.start_gateway(self._log, self.log_path)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start_gateway(self, log: Any, log_path: Path, *extra: str) -> tuple[int, subprocess.Popen]:
        """A gateway process on this stack's NATS, up and answering, with ``extra`` flags."""
        port = free_port()
        gateway = subprocess.Popen(
            [
                sys.executable, "-m", "trl_nats_provider.openai", "--port", str(port), "--api-keys-file",
                str(self.keys), "--set", "max_length=128", "--max-file-mib", "1", *extra,
            ],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        url = f"http://127.0.0.1:{port}/v1/files"
        while True:
            try:
                if httpx.get(url, headers={"Authorization": f"Bearer {ALICE}"}).status_code == 200:
                    return port, gateway
            except httpx.HTTPError:
                pass
            if gateway.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not come up:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, key: str = ALICE) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)

    def stop(self) -> None:
        if self.gateway.poll() is None:
            self.gateway.terminate()
            try:
                self.gateway.wait(30)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait()
        self._log.close()
        self.agent.stop()
        self.nats.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_model: Path):
    s = Stack(tmp_path_factory.mktemp("openai"), tiny_model)
    try:
        yield s
    finally:
        s.stop()


def pull(stack: Stack, job_id: str, checkpoint: int | str, dest: Path) -> Path:
    """Fetch a stored checkpoint or the final model named by the API, as a user would: the core client's pull."""

    async def go() -> Path:
        client = await Client.connect(NatsSettings(servers=[stack.nats.url]))
        try:
            return (await client.pull(job_id, checkpoint, dest)).path
        finally:
            await client.close()

    return asyncio.run(go())


def wait_job(client: openai.OpenAI, job_id: str, until: tuple[str, ...] = TERMINAL) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in until:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached {until}")


def job_record(stack: Stack, job_id: str):
    """The job's record as stored in the jobs KV bucket (read with the core client, not the API)."""

    async def go():
        async with await Client.connect(NatsSettings(servers=[stack.nats.url])) as client:
            return await client.job(job_id).status()

    return asyncio.run(go())


def upload(client: openai.OpenAI, name: str, data: bytes):
    f = client.files.create(file=(name, data), purpose="fine-tune")
    assert f.status == "processed", f.status_details
    return f


def dpo_job(client: openai.OpenAI, model: str, file_id: str, **hyper: Any):
    hp = {"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 2.0, **hyper}
    return client.fine_tuning.jobs.create(
        model=model, training_file=file_id, method={"type": "dpo", "dpo": {"hyperparameters": hp}}
    )


@pytest.fixture(scope="module")
def dpo_done(stack: Stack):
    """One DPO job run to the end through the SDK: (file, job) as the API answers them."""
    client = stack.client()
    f = upload(client, "prefs.jsonl", dpo_lines(8))
    job = dpo_job(client, stack.model, f.id, beta=0.2)
    assert job.status in ("queued", "running")
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.2
    done = wait_job(client, job.id)
    assert done.status == "succeeded", (done.error, stack.agent.log()[-3000:])
    return f, done


def test_dpo_job_succeeds_with_the_final_model_named(stack: Stack, dpo_done, tmp_path: Path) -> None:
    f, job = dpo_done
    assert job.fine_tuned_model == f"nats://trl_artifacts/{job.id}/final"  # the artifact store: pullable anywhere
    assert job.finished_at and job.finished_at >= job.created_at
    assert job.error is None
    assert job.training_file == f.id
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 2
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pull(stack, job.id, "final", tmp_path / "final"))
    assert model.config.num_hidden_layers == 2
    listed = stack.client().fine_tuning.jobs.list()
    assert job.id in [j.id for j in listed.data]


def test_events_page_newest_first_with_metrics(stack: Stack, dpo_done) -> None:
    _, job = dpo_done
    client = stack.client()
    everything = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    assert len(everything) > 6
    pages, after = [], None
    while True:
        page = client.fine_tuning.jobs.list_events(job.id, limit=3, **({"after": after} if after else {}))
        assert len(page.data) <= 3
        pages.append(page)
        if not page.has_more:
            break
        assert len(page.data) == 3
        after = page.data[-1].id
    assert all(p.has_more for p in pages[:-1]) and len(pages) >= 3
    ids = [e.id for p in pages for e in p.data]
    assert ids == [e.id for e in everything] and len(set(ids)) == len(ids)
    seqs = [int(i.removeprefix("ftevent-")) for i in ids]
    assert seqs == sorted(seqs, reverse=True)  # newest first, as OpenAI lists them
    assert everything[0].message.startswith("Job succeeded")
    assert everything[-1].message.startswith("Job queued")
    steps = [e for e in everything if e.type == "metrics" and "reward_margin" in (e.data or {})]
    assert len(steps) >= 4, [e.message for e in everything]  # one per training step (DPO's figures with each)
    for e in steps:
        assert e.object == "fine_tuning.job.event" and e.data["step"] >= 1
        assert isinstance(e.data["train_loss"], float) and 0.0 <= e.data["reward_accuracy"] <= 1.0
    # raw HTTP: the same page, and the list shape OpenAI sends
    raw = httpx.get(
        f"{stack.base_url}/fine_tuning/jobs/{job.id}/events",
        params={"limit": 2},
        headers={"Authorization": f"Bearer {ALICE}"},
    ).json()
    assert raw["object"] == "list" and raw["has_more"] is True and [e["id"] for e in raw["data"]] == ids[:2]


def test_checkpoints_listed_and_loadable_with_transformers(stack: Stack, dpo_done, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    _, job = dpo_done
    client = stack.client()
    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id, limit=100).data
    steps = [c.step_number for c in ckpts]
    assert len(ckpts) >= 2 and steps == sorted(steps, reverse=True)
    intermediate = [c for c in ckpts if not c.id.endswith("-final")]
    assert intermediate
    for c in ckpts:
        assert c.object == "fine_tuning.job.checkpoint" and c.fine_tuning_job_id == job.id
        assert c.metrics.step == c.step_number
    for c in intermediate:
        assert c.metrics.train_loss is not None
        assert c.metrics.valid_loss is None  # no validation file
        assert c.fine_tuned_model_checkpoint == f"nats://trl_artifacts/{job.id}/checkpoint-{c.step_number}"
        path = pull(stack, job.id, c.step_number, tmp_path / f"step-{c.step_number}")
        model = AutoModelForCausalLM.from_pretrained(path)
        assert model.config.vocab_size > 0
    first = client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)
    assert first.has_more and first.data[0].id == ckpts[0].id
    second = client.fine_tuning.jobs.checkpoints.list(job.id, limit=1, after=first.data[0].id)
    assert second.data[0].id == ckpts[1].id


async def test_sft_with_a_validation_file_reports_valid_loss_async_client(stack: Stack) -> None:
    client = openai.AsyncOpenAI(base_url=stack.base_url, api_key=ALICE, max_retries=0, timeout=60)
    train = await client.files.create(file=("train.jsonl", sft_lines(8)), purpose="fine-tune")
    valid = await client.files.create(file=("valid.jsonl", sft_lines(4, start=8)), purpose="fine-tune")
    assert train.status == valid.status == "processed"
    job = await client.fine_tuning.jobs.create(
        model=stack.model,
        training_file=train.id,
        validation_file=valid.id,
        suffix="sft-valid",
        seed=7,
        metadata={"case": "sft-validation"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
    )
    assert job.validation_file == valid.id and job.seed == 7 and job.method.type == "supervised"
    deadline = time.monotonic() + WAIT_S
    while job.status not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        job = await client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", (job.error, stack.agent.log()[-3000:])
    ckpts = (await client.fine_tuning.jobs.checkpoints.list(job.id)).data
    evaluated = [c for c in ckpts if c.metrics.valid_loss is not None]
    assert evaluated, [c.metrics for c in ckpts]
    for c in evaluated:
        assert c.metrics.valid_loss > 0 and c.metrics.full_valid_loss == c.metrics.valid_loss
    events = (await client.fine_tuning.jobs.list_events(job.id, limit=1000)).data
    assert any(e.type == "metrics" and "valid_loss" in (e.data or {}) for e in events)
    found = await client.fine_tuning.jobs.list(metadata={"case": "sft-validation"})
    assert [j.id for j in found.data] == [job.id]
    await client.close()


def test_cancel_a_running_job(stack: Stack) -> None:
    client = stack.client()
    f = upload(client, "long.jsonl", dpo_lines(8, start=8))
    job = dpo_job(client, stack.model, f.id, n_epochs=50, batch_size=1)
    wait_job(client, job.id, until=("running", *TERMINAL))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # until training has logged a step: the job is really running
        events = client.fine_tuning.jobs.list_events(job.id, limit=5).data
        if any(e.type == "metrics" for e in events):
            break
        time.sleep(0.5)
    answer = client.fine_tuning.jobs.cancel(job.id)
    assert answer.id == job.id and answer.status in ("running", "cancelled")
    done = wait_job(client, job.id)
    assert done.status == "cancelled"
    assert done.fine_tuned_model is None
    with pytest.raises(openai.ConflictError) as err:
        client.fine_tuning.jobs.cancel(job.id)
    assert "already ended as cancelled" in err.value.body["message"]


def test_another_key_sees_nothing_and_a_wrong_key_is_refused(stack: Stack, dpo_done) -> None:
    f, job = dpo_done
    bob = stack.client(BOB)
    with pytest.raises(openai.NotFoundError) as err:
        bob.fine_tuning.jobs.retrieve(job.id)
    assert err.value.body["code"] == "fine_tuning_job_not_found"
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.list_events(job.id)
    with pytest.raises(openai.NotFoundError):
        bob.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(f.id)
    assert job.id not in [j.id for j in bob.fine_tuning.jobs.list().data]
    assert f.id not in [x.id for x in bob.files.list().data]
    with pytest.raises(openai.NotFoundError) as err:  # alice's file cannot be trained on by bob
        dpo_job(bob, stack.model, f.id)
    assert err.value.body["param"] == "training_file"
    for key in ("sk-wrong-0123456789abcdef", "x"):
        with pytest.raises(openai.AuthenticationError) as err:
            stack.client(key).fine_tuning.jobs.list()
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    raw = httpx.get(f"{stack.base_url}/fine_tuning/jobs")  # no key at all
    assert raw.status_code == 401 and set(raw.json()["error"]) == {"message", "type", "param", "code"}


def test_files_list_retrieve_content_delete(stack: Stack) -> None:
    client = stack.client()
    data = sft_lines(3)
    f = upload(client, "three.jsonl", data)
    assert f.bytes == len(data) and f.filename == "three.jsonl" and f.purpose == "fine-tune"
    assert client.files.retrieve(f.id).id == f.id
    assert f.id in [x.id for x in client.files.list().data]
    assert client.files.content(f.id).content == data
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)


# -- bad inputs ----------------------------------------------------------------------------------------------

BAD_INPUTS_DOC = REPO / "docs" / "openai-bad-inputs.md"


def bad_inputs(stack: Stack, finished_job: str) -> list[tuple[str, str, Any]]:
    """(what is sent, a word the answer must use to say what to change, the call)."""
    c = stack.client()
    model = stack.model
    dpo = upload(c, "ok-dpo.jsonl", dpo_lines(4)).id
    sft = upload(c, "ok-sft.jsonl", sft_lines(4)).id
    broken = c.files.create(
        file=("broken.jsonl", dpo_lines(2) + b'\n{"input": {"messages": []}}\n'), purpose="fine-tune"
    )
    assert broken.status == "error" and "line 3" in broken.status_details
    headers = {"Authorization": f"Bearer {ALICE}"}

    def job(**kw: Any):
        body = {"model": model, "training_file": dpo, "method": {"type": "dpo"}, **kw}
        return lambda: c.fine_tuning.jobs.create(**body)

    def hp(kind: str, **values: Any):
        return job(
            method={"type": kind, kind: {"hyperparameters": values}},
            **({"training_file": sft} if kind == "supervised" else {}),
        )

    def raw(method: str, path: str, **kw: Any):
        def call():
            r = httpx.request(method, stack.base_url + path, timeout=60, **kw)
            raise openai.APIStatusError(r.text, response=r, body=r.json()["error"])

        return call

    return [
        (
            "file with purpose 'assistants'",
            "fine-tune",
            lambda: c.files.create(file=("a.jsonl", dpo_lines(1)), purpose="assistants"),
        ),
        (
            "upload without a file part",
            "file",
            raw("POST", "/files", headers=headers, data={"purpose": "fine-tune"}, files={"x": ("x", b"1")}),
        ),
        (
            "upload without purpose",
            "purpose",
            raw("POST", "/files", headers=headers, files={"file": ("a.jsonl", dpo_lines(1))}),
        ),
        (
            "upload that is not multipart",
            "multipart",
            raw("POST", "/files", headers=headers, json={"purpose": "fine-tune"}),
        ),
        ("empty file", "JSON lines", lambda: c.files.create(file=("e.jsonl", b"\n"), purpose="fine-tune")),
        (
            "file over the size limit (1 MiB here)",
            "limit",
            lambda: c.files.create(file=("big.jsonl", b"x" * (1 << 20) + b"xx"), purpose="fine-tune"),
        ),
        ("retrieve an unknown file", "check the id", lambda: c.files.retrieve("file-doesnotexist")),
        ("delete an unknown file", "check the id", lambda: c.files.delete("file-doesnotexist")),
        ("content of an unknown file", "check the id", lambda: c.files.content("file-doesnotexist")),
        ("job without model", "model", job(model=None)),
        ("job with an empty model", "model", job(model=" ")),
        ("model path with '..'", "..", job(model="/models/../etc")),
        ("job without training_file", "training_file", job(training_file=None)),
        ("training_file that is not a file id", "files.create", job(training_file="prefs.jsonl")),
        ("training_file nobody uploaded", "check the id", job(training_file="file-doesnotexist")),
        ("training_file that failed its check", "upload it again", job(training_file=broken.id)),
        ("supervised lines for a DPO job", "preferred_output", job(training_file=sft)),
        ("preference lines for a supervised job", "messages", job(method={"type": "supervised"})),
        ("validation_file nobody uploaded", "check the id", job(validation_file="file-doesnotexist")),
        ("method reinforcement", "dpo", job(method={"type": "reinforcement"})),
        ("method type 'ppo'", "'dpo' or 'supervised'", job(method={"type": "ppo"})),
        ("method that is a string", "object", job(method="dpo")),
        ("beta 0", "above 0", hp("dpo", beta=0)),
        ("beta 'high'", "number or 'auto'", hp("dpo", beta="high")),
        ("n_epochs 0", "at least 1", hp("dpo", n_epochs=0)),
        ("n_epochs 2.5", "whole number", hp("dpo", n_epochs=2.5)),
        ("batch_size -1", "at least 1", hp("dpo", batch_size=-1)),
        ("learning_rate_multiplier true", "number", hp("dpo", learning_rate_multiplier=True)),
        ("beta for a supervised job", "batch_size", hp("supervised", beta=0.1)),
        ("unknown hyperparameter 'warmup'", "n_epochs", hp("dpo", warmup=10)),
        (
            "hyperparameters both at the top and in method",
            "only in method",
            job(hyperparameters={"n_epochs": 1}, method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1}}}),
        ),
        ("suffix of 70 characters", "64", job(suffix="s" * 70)),
        ("suffix with a space", "letters", job(suffix="my model")),
        ("seed -1", "0 to", job(seed=-1)),
        ("metadata with 17 pairs", "16", job(metadata={f"k{i}": "v" for i in range(17)})),
        ("metadata value that is a number", "string", job(metadata={"team": 5})),
        ("integrations (wandb)", "remove", job(integrations=[{"type": "wandb", "wandb": {"project": "p"}}])),
        (
            "unknown parameter",
            "takes",
            lambda: c.fine_tuning.jobs.create(model=model, training_file=dpo, extra_body={"learning_rate": 1}),
        ),
        (
            "job body that is not JSON",
            "JSON",
            raw(
                "POST",
                "/fine_tuning/jobs",
                headers={**headers, "Content-Type": "application/json"},
                content=b"{not json",
            ),
        ),
        ("job body that is a list", "object", raw("POST", "/fine_tuning/jobs", headers=headers, json=[1, 2])),
        ("retrieve an unknown job", "check the id", lambda: c.fine_tuning.jobs.retrieve("ftjob-doesnotexist")),
        ("cancel an unknown job", "check the id", lambda: c.fine_tuning.jobs.cancel("ftjob-doesnotexist")),
        ("events of an unknown job", "check the id", lambda: c.fine_tuning.jobs.list_events("ftjob-doesnotexist")),
        ("cancel a job that has finished", "nothing to cancel", lambda: c.fine_tuning.jobs.cancel(finished_job)),
        ("list jobs with limit 0", "limit", lambda: c.fine_tuning.jobs.list(limit=0)),
        (
            "list jobs with limit 'ten'",
            "whole number",
            raw("GET", "/fine_tuning/jobs", headers=headers, params={"limit": "ten"}),
        ),
        (
            "events after an unknown cursor",
            "previous page",
            lambda: c.fine_tuning.jobs.list_events(finished_job, after="ftevent-0"),
        ),
        (
            "events after a cursor past the end",
            "previous page",
            lambda: c.fine_tuning.jobs.list_events(finished_job, after="ftevent-999999999"),
        ),
        (
            "events after a checkpoint id",
            "previous page",
            lambda: c.fine_tuning.jobs.list_events(finished_job, after="ftckpt-1"),
        ),
        ("a wrong API key", "API key", lambda: stack.client("sk-wrong-0123456789abcdef").files.list()),
        ("no API key", "API key", raw("GET", "/files")),
        ("an unknown route", "routes", raw("GET", "/fine_tuning/nope", headers=headers)),
    ]


def test_bad_inputs_get_4xx_in_openai_shape_then_a_valid_job_succeeds(stack: Stack, dpo_done) -> None:
    _, finished = dpo_done
    client = stack.client()
    jobs_before = {j.id for j in client.fine_tuning.jobs.list(limit=100).data}
    rows = []
    cases = bad_inputs(stack, finished.id)
    assert len(cases) >= 25
    for what, needle, call in cases:
        with pytest.raises(openai.APIStatusError) as err:
            call()
        exc = err.value
        body = exc.response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, (what, body)
        message = body["error"]["message"]
        assert 400 <= exc.status_code < 500, (what, exc.status_code, message)
        assert needle.lower() in message.lower(), (what, needle, message)
        rows.append((what, exc.status_code, body["error"]["param"], body["error"]["code"], message))
    # nothing was half-created: the same jobs as before, and the service still answers
    assert {j.id for j in client.fine_tuning.jobs.list(limit=100).data} == jobs_before
    lines = [
        "# The OpenAI API: bad inputs and their answers",
        "",
        "Generated by `tests/test_openai_api.py::test_bad_inputs_get_4xx_in_openai_shape_then_a_valid_job_succeeds`",
        "(do not edit by hand). Each was sent through the official `openai` SDK (or raw HTTP where the SDK",
        "cannot send it) to a running `trl-nats serve`; each answer is OpenAI's error shape",
        '`{"error": {"message", "type", "param", "code"}}`. After all of them a valid job still succeeds.',
        "",
        "| # | sent | status | param | code | message |",
        "|---|---|---|---|---|---|",
    ]
    for n, (what, status, param, code, message) in enumerate(rows, 1):
        cell = re.sub(r"(file|ftjob)-[0-9a-f]{24}", r"\1-<id>", message).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {n} | {what} | {status} | {param or ''} | {code or ''} | {cell} |")
    BAD_INPUTS_DOC.write_text("\n".join(lines) + "\n")
    f = upload(client, "after.jsonl", dpo_lines(4, start=20))
    job = dpo_job(client, stack.model, f.id)
    assert wait_job(client, job.id).status == "succeeded"


def test_the_sdk_example_runs_against_the_service(stack: Stack) -> None:
    env = dict(os.environ, OPENAI_API_KEY=ALICE)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "openai_sdk.py"),
            "--model",
            stack.model,
            "--base-url",
            stack.base_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count(": succeeded, model at ") == 2, proc.stdout
    valid = [line for line in proc.stdout.splitlines() if "valid_loss" in line]
    assert valid and any("valid_loss None" not in line for line in valid), proc.stdout


def test_a_retried_create_with_an_idempotency_key_returns_the_same_job(stack: Stack) -> None:
    client = stack.client()
    f = upload(client, "retry.jsonl", dpo_lines(4, start=30))
    body = {"model": stack.model, "training_file": f.id, "method": {"type": "dpo"}}
    key = {"Idempotency-Key": "nightly-2026-12-01"}
    first = client.fine_tuning.jobs.create(**body, extra_headers=key)
    again = client.fine_tuning.jobs.create(**body, extra_headers=key)
    assert again.id == first.id and again.seed == first.seed
    assert [j.id for j in client.fine_tuning.jobs.list(limit=100).data].count(first.id) == 1
    with pytest.raises(openai.ConflictError) as err:
        client.fine_tuning.jobs.create(**{**body, "suffix": "other"}, extra_headers=key)
    assert err.value.body["code"] == "idempotency_key_reused" and "new key" in err.value.body["message"]
    other = client.fine_tuning.jobs.create(**body, extra_headers={"Idempotency-Key": "nightly-2026-12-02"})
    assert other.id != first.id
    for job_id in (first.id, other.id):  # they were only needed to exist
        client.fine_tuning.jobs.cancel(job_id)
        assert wait_job(client, job_id).status == "cancelled"


def test_pause_then_resume_a_running_job_trains_every_step_once(stack: Stack) -> None:
    client = stack.client()
    f = upload(client, "pause.jsonl", dpo_lines(8, start=40))
    job = dpo_job(client, stack.model, f.id, n_epochs=12, batch_size=1)  # 96 steps: time to pause mid-run
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:  # until training has logged a step
        if any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=10).data):
            break
        time.sleep(0.5)
    paused = client.fine_tuning.jobs.pause(job.id)
    assert paused.status in ("running", "paused")  # running while it saves its checkpoint
    assert wait_job(client, job.id, until=("paused", *TERMINAL)).status == "paused"
    with pytest.raises(openai.NotFoundError):
        stack.client(BOB).fine_tuning.jobs.resume(job.id)  # not a job of this key
    resumed = client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    with pytest.raises(openai.ConflictError) as err:
        client.fine_tuning.jobs.resume(job.id)  # queued or running again: not paused
    assert "not paused" in err.value.body["message"] and err.value.body["code"] == "job_not_paused"
    done = wait_job(client, job.id)
    assert done.status == "succeeded", (done.error, stack.agent.log()[-3000:])
    events = client.fine_tuning.jobs.list_events(job.id, limit=1000).data
    steps = sorted(e.data["step"] for e in events if e.type == "metrics" and "reward_margin" in (e.data or {}))
    assert steps == list(range(1, 97)), steps  # every step trained once: none lost, none repeated
    assert any(e.message.startswith("Job paused") for e in events)


def test_dpo_lora_setting_makes_every_dpo_job_lora(stack: Stack, tmp_path: Path) -> None:
    """``--dpo-lora`` on a gateway: a DPO job made with the SDK (whose API has no LoRA field) is stored on NATS
    with the operator's adapter, an SFT job without one. A second gateway on the stack's NATS; no training."""
    from trl_nats.messages import LoraParams

    log_path = tmp_path / "gateway-lora.log"
    with open(log_path, "wb") as log:
        port, gateway = stack.start_gateway(log, log_path, "--dpo-lora", '{"rank": 4, "alpha": 8, "merge": true}')
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=ALICE, max_retries=0, timeout=60)
            dpo = dpo_job(client, stack.model, upload(client, "lora.jsonl", dpo_lines(8, start=24)).id)
            sft = client.fine_tuning.jobs.create(
                model=stack.model, training_file=upload(client, "lora-sft.jsonl", sft_lines(8)).id,
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}},
            )  # fmt: skip
            specs = {job.id: job_record(stack, job.id).spec for job in (dpo, sft)}
            for job in (dpo, sft):
                client.fine_tuning.jobs.cancel(job.id)
        finally:
            gateway.terminate()
            gateway.wait(30)
    assert specs[dpo.id].params.lora == LoraParams(rank=4, alpha=8.0, merge=True)
    assert specs[sft.id].params.lora is None
    assert wait_job(stack.client(), dpo.id).status == "cancelled"
