"""The OpenAI fine-tuning jobs API mounted on a real ``ogx run`` (OGX 1.5) as an external API.

A real nats-server and CPU agent (the EmbeddedStack parts) and OGX from its own venv
(``scripts/setup-stack.sh ogx``) with two external APIs from ``providers.d/apis``: post_training and
fine_tuning. Files go through OGX's own Files API (purpose ``fine-tune``); jobs through the routes of
``trl_nats_provider.openai``; every call is the official ``openai`` SDK.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import openai
import pytest
from test_openai_api import dpo_lines, free_port, wait_job
from trl_nats_provider.embedded import EmbeddedStack
from trl_nats_provider.stack import LlamaStackServer, dump_run_config, run_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def ogx_bin() -> str:
    env = dict(os.environ)
    env.setdefault("TRL_NATS_VENV_OGX", str(REPO / ".venv-ogx"))
    done = subprocess.run(
        [str(REPO / "scripts" / "setup-stack.sh"), "ogx"], capture_output=True, text=True, timeout=1800, env=env
    )
    assert done.returncode == 0, f"scripts/setup-stack.sh ogx failed:\n{done.stderr[-3000:]}"
    return str(Path(done.stdout.strip().splitlines()[-1]) / "bin")


@pytest.fixture(scope="module")
def ogx(tmp_path_factory, tiny_model: Path):
    root = tmp_path_factory.mktemp("ogx-openai")
    bin_dir = ogx_bin()
    parts = EmbeddedStack(root, stack="ogx", stack_bin=bin_dir, slots=1)
    server = None
    try:
        parts.start_nats()
        parts.start_agent()
        port = free_port()
        nats = {"servers": parts.nats_url}
        config = run_config(
            stack="ogx",
            stack_dir=root / "stack",
            port=port,
            provider_config=nats,
            tls=False,
            external_apis_dir=REPO / "providers.d" / "apis",
        )
        config["apis"].append("fine_tuning")
        config["providers"]["fine_tuning"] = [
            {"provider_id": "trl_nats_openai", "provider_type": "remote::trl_nats_openai", "config": nats}
        ]
        path = root / "run-ogx-openai.yaml"
        path.write_text(dump_run_config(config, stack="ogx"))
        server = LlamaStackServer(
            path, port=port, log_path=root / "ogx.log", env=parts.env(), stack="ogx", bin_dir=bin_dir, insecure=True
        ).start()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ogx", max_retries=0, timeout=120)
        yield client, str(tiny_model), server
    finally:
        if server is not None:
            server.stop()
        parts.stop()


def test_a_dpo_job_through_ogx_files_and_the_mounted_jobs_api(ogx) -> None:
    client, model, server = ogx
    f = client.files.create(file=("prefs.jsonl", dpo_lines(4)), purpose="fine-tune")  # OGX's Files API
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=f.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
    )
    assert job.training_file == f.id and job.organization_id == "ogx"
    done = wait_job(client, job.id)
    assert done.status == "succeeded", (done.error, server.tail())
    assert done.fine_tuned_model == f"nats://trl_artifacts/{job.id}/final"
    events = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(events.data) == 2 and events.has_more and events.data[0].message.startswith("Job succeeded")
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert job.id in [j.id for j in client.fine_tuning.jobs.list().data]


def test_bad_inputs_on_ogx_are_openai_errors(ogx) -> None:
    client, model, _ = ogx
    broken = client.files.create(file=("broken.jsonl", b'{"input": {"messages": []}}\n'), purpose="fine-tune")
    cases = [
        (
            400,
            "line 1",
            lambda: client.fine_tuning.jobs.create(model=model, training_file=broken.id, method={"type": "dpo"}),
        ),
        (
            400,
            "not offered",
            lambda: client.fine_tuning.jobs.create(
                model=model, training_file=broken.id, method={"type": "reinforcement"}
            ),
        ),
        (
            404,
            "check the id",
            lambda: client.fine_tuning.jobs.create(model=model, training_file="file-nope", method={"type": "dpo"}),
        ),
        (404, "check the id", lambda: client.fine_tuning.jobs.retrieve("ftjob-nope")),
    ]
    for status, needle, call in cases:
        with pytest.raises(openai.APIStatusError) as err:
            call()
        assert err.value.status_code == status, err.value.response.text
        assert needle in err.value.body["message"] and set(err.value.body) == {"message", "type", "param", "code"}
