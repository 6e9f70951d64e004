"""The post_training API on llama-stack 0.6.1 (native), 0.7.3 and OGX 1.5 (external API), through plain HTTP.

Per host, one module-scoped stack (the EmbeddedStack the demo runs): a real
nats-server, one CPU agent with one process slot, and the real server
(``llama stack run`` / ``ogx run``) from that host's own venv
(``scripts/setup-stack.sh``; the 0.6.1 host is this interpreter's venv).
Every call is raw HTTP with httpx, as a client of any of the three would send
it. One scenario per host, asserted by the tests below:

- a long DPO job from an uploaded file trains (``in_progress``); a short DPO
  job (from a registered dataset where the host has datasets, else a file)
  waits ``scheduled`` behind it; resubmitting the short job answers the same
  job, a different request under its id is a 409;
- the long job is cancelled (its torchrun gone), the short one completes and
  its final checkpoint loads with transformers; both are listed;
- the server restarts and still reports both;
- one table of bad inputs, the same status codes on every host, written to
  ``docs/llama-stack-bad-inputs.md``.

On OGX also SFT (full and LoRA) from an uploaded file to completion.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import assert_loads, ended, poll_status, training_processes
from trl_nats_provider.embedded import EmbeddedStack, shipped_dataset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
HOSTS = ["llama-stack-0.6", "llama-stack-0.7", "ogx"]
HOST_NAMES = {"llama-stack-0.6": "llama-stack 0.6.1", "llama-stack-0.7": "llama-stack 0.7.3", "ogx": "OGX 1.5"}
BAD_INPUTS_DOC = REPO / "docs" / "llama-stack-bad-inputs.md"
PT = "/v1alpha/post-training"


# -- helpers ------------------------------------------------------------------------------


def rows_of(name: str, n: int) -> list[dict[str, Any]]:
    return [json.loads(line) for line in shipped_dataset(name).read_text().splitlines()[:n]]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def stack_bin(host: str) -> str | None:
    """bin/ of the venv that serves ``host``: made (or found up to date) by scripts/setup-stack.sh."""
    if host == "llama-stack-0.6":
        return None
    done = subprocess.run(
        [str(REPO / "scripts" / "setup-stack.sh"), host], capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"scripts/setup-stack.sh {host} failed:\n{done.stderr[-3000:]}"
    return str(Path(done.stdout.strip().splitlines()[-1]) / "bin")


def upload(http: httpx.Client, host: str, rows: list[dict[str, Any]] | bytes, name: str) -> str:
    """POST /v1/files (the stack's own Files API); returns the file id."""
    data = rows if isinstance(rows, bytes) else jsonl(rows)
    purpose = "fine-tune" if host == "ogx" else "assistants"  # 0.6.1 and 0.7.3 know only assistants and batch
    resp = http.post("/v1/files", files={"file": (name, data, "application/jsonl")}, data={"purpose": purpose})
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def register(http: httpx.Client, host: str, dataset_id: str, rows: list[dict[str, Any]]) -> str:
    """POST /v1beta/datasets with a rows source (0.7.3 takes only eval purposes; they iterate the same)."""
    purpose = "post-training/messages" if host == "llama-stack-0.6" else "eval/messages-answer"
    resp = http.post(
        "/v1beta/datasets",
        json={"dataset_id": dataset_id, "purpose": purpose, "source": {"type": "rows", "rows": rows}},
    )
    assert resp.status_code == 200, resp.text
    return dataset_id


def training_config(dataset_id: str, steps: int = 2, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "n_epochs": epochs,
        "max_steps_per_epoch": steps,
        "data_config": {"dataset_id": dataset_id, "batch_size": 2, "shuffle": True, "data_format": "instruct"},
        "optimizer_config": {"optimizer_type": "adamw", "lr": 5e-4, "weight_decay": 0.0, "num_warmup_steps": 0},
        "dtype": "fp32",
        **extra,
    }


def dpo_body(job_uuid: str, model: Path | str, dataset_id: str, beta: float = 0.1, **kw: Any) -> dict[str, Any]:
    return {
        "job_uuid": job_uuid,
        "finetuned_model": str(model),
        "algorithm_config": {"beta": beta, "loss_type": kw.pop("loss_type", "sigmoid")},
        "training_config": training_config(dataset_id, **kw),
        "hyperparam_search_config": {},
        "logger_config": {},
    }


def status(http: httpx.Client, job_uuid: str) -> dict[str, Any]:
    resp = http.get(f"{PT}/jobs/{job_uuid}/status")
    assert resp.status_code == 200, resp.text
    return resp.json()


def poll(http: httpx.Client, job_uuid: str, until, what: str) -> tuple[dict[str, Any], list[str]]:
    return poll_status(lambda j: status(http, j), job_uuid, until, what)


def message(resp: httpx.Response) -> str:
    return resp.json()["error"]["message"]


# -- one stack per host, one scenario per stack ------------------------------------------------------


@pytest.fixture(scope="module", params=HOSTS)
def host(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def stack(host, tmp_path_factory):
    started = time.monotonic()
    bin_dir = stack_bin(host)
    state = tmp_path_factory.mktemp(f"stack-{host}")
    s = EmbeddedStack(
        state, slots=1, agent_args=["--heartbeat", "1", "--cancel-grace", "5"], stack=host, stack_bin=bin_dir
    )
    s.start()
    print(f"\n{host}: venv + nats-server + agent + server up in {time.monotonic() - started:.1f}s")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def http(stack) -> httpx.Client:
    with httpx.Client(base_url=stack.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def scenario(host, stack, http, tiny_model) -> dict[str, Any]:
    """The long job trains, the short one waits behind it, is resubmitted, the long one is cancelled,
    the short one completes; then the server restarts."""
    started = time.monotonic()
    prefs = rows_of("preferences.jsonl", 48)
    prefs_file = upload(http, host, prefs, "prefs.jsonl")
    source = prefs_file if host == "ogx" else register(http, host, "prefs", prefs)
    long_id, short_id = f"{host}-long".replace(".", "-"), f"{host}-dpo".replace(".", "-")
    out: dict[str, Any] = {"file_id": prefs_file, "source": source, "long": long_id, "short": short_id}

    resp = http.post(
        f"{PT}/preference-optimize", json=dpo_body(long_id, tiny_model, prefs_file, steps=1000, epochs=200)
    )
    out["long_submit"] = (resp.status_code, resp.json())
    out["running"], _ = poll(
        http,
        long_id,
        lambda st: st["status"] == "in_progress" and st["resources_allocated"]["progress"]["step"] >= 1,
        "a training step",
    )
    out["pids_before"] = training_processes(long_id)

    body = dpo_body(short_id, tiny_model, source, steps=2)
    resp = http.post(f"{PT}/preference-optimize", json=body)
    out["short_submit"] = (resp.status_code, resp.json())
    out["queued"] = status(http, short_id)
    resp = http.post(f"{PT}/preference-optimize", json=body)
    out["again"] = (resp.status_code, resp.json())
    resp = http.post(f"{PT}/preference-optimize", json=dpo_body(short_id, tiny_model, source, beta=0.3, steps=2))
    out["differs"] = (resp.status_code, message(resp) if resp.status_code >= 400 else resp.text)

    resp = http.post(f"{PT}/jobs/{long_id}/cancel")
    out["cancel"] = resp.status_code
    out["cancelled"], _ = poll(http, long_id, ended, "the cancel")
    deadline = time.monotonic() + 60
    while training_processes(long_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    out["pids_after"] = training_processes(long_id)

    out["final"], seen = poll(http, short_id, ended, "the end")
    out["seen"] = [out["queued"]["status"], *seen]
    out["artifacts"] = http.get(f"{PT}/jobs/{short_id}/artifacts").json()
    out["jobs"] = [j["job_uuid"] for j in http.get(f"{PT}/jobs").json()["data"]]
    out["resubmit_after_end"] = http.post(f"{PT}/preference-optimize", json=body).status_code

    stack.restart_llama_stack()
    out["after_restart"] = {
        "short": status(http, short_id),
        "long": status(http, long_id),
        "artifacts": http.get(f"{PT}/jobs/{short_id}/artifacts").json(),
        "jobs": [j["job_uuid"] for j in http.get(f"{PT}/jobs").json()["data"]],
    }
    print(f"\n{host}: scenario in {time.monotonic() - started:.1f}s")
    return out


def test_a_running_job_is_reported_in_progress_with_its_node(scenario):
    assert scenario["long_submit"] == (200, {"job_uuid": scenario["long"]})
    running = scenario["running"]
    assert running["status"] == "in_progress" and running["started_at"] is not None
    assert running["resources_allocated"]["node"] and running["resources_allocated"]["nodes"][0]["agent"] == "agent-1"


def test_a_job_behind_it_is_scheduled_then_completes(scenario):
    assert scenario["short_submit"] == (200, {"job_uuid": scenario["short"]})
    queued = scenario["queued"]
    assert queued["status"] == "scheduled" and queued["scheduled_at"] and queued["started_at"] is None
    assert queued["resources_allocated"]["node"] is None
    seen = scenario["seen"]
    assert seen[0] == "scheduled" and seen[-1] == "completed" and "in_progress" in seen, seen
    final = scenario["final"]
    assert final["status"] == "completed", final
    assert final["scheduled_at"] <= final["started_at"] <= final["completed_at"]
    assert final["resources_allocated"]["progress"]["step"] == 2


def test_resubmitting_the_same_job_uuid_is_the_same_job_and_another_request_is_a_409(scenario):
    assert scenario["again"] == (200, {"job_uuid": scenario["short"]})
    assert scenario["resubmit_after_end"] == 200
    code, text = scenario["differs"]
    assert code == 409 and "params.beta: 0.1 then 0.3" in text, (code, text)
    assert scenario["jobs"].count(scenario["short"]) == 1


def test_cancelling_a_running_job_leaves_no_process(scenario):
    assert scenario["cancel"] == 200
    assert scenario["pids_before"], "the long job's torchrun should have been running before the cancel"
    assert scenario["cancelled"]["status"] == "cancelled" and scenario["cancelled"]["completed_at"] is not None
    assert scenario["pids_after"] == [], f"training processes left after cancel: {scenario['pids_after']}"


def test_artifacts_are_listed_and_the_final_checkpoint_loads(scenario, stack, tmp_path):
    arts = scenario["artifacts"]
    assert arts["job_uuid"] == scenario["short"] and arts["checkpoints"], arts
    finals = [c for c in arts["checkpoints"] if c["identifier"].endswith("/final")]
    assert finals, arts
    assert all(c["post_training_job_id"] == scenario["short"] for c in arts["checkpoints"])
    assert {scenario["short"], scenario["long"]} <= set(scenario["jobs"])
    assert_loads(finals[0]["path"], stack.nats_url, tmp_path / "final")


def test_a_restarted_server_still_reports_the_jobs(scenario, stack):
    after = scenario["after_restart"]
    assert after["short"]["status"] == "completed" and after["long"]["status"] == "cancelled"
    assert after["short"]["completed_at"] == scenario["final"]["completed_at"]
    assert after["artifacts"] == scenario["artifacts"]
    assert {scenario["short"], scenario["long"]} <= set(after["jobs"])
    assert stack.server.healthy()


# -- bad inputs: one table, the same answers on every host ------------------------------------------

BAD_PREFS = jsonl([*rows_of("preferences.jsonl", 3), {"prompt": "p", "rejected": "r"}])


def bad_cases(model: str, source: str, file_id: str, bad_file_id: str) -> list[tuple[str, str, str, Any, int, str]]:
    """(case, method, path, body, status, text the message must contain)."""

    def dpo(**kw: Any) -> dict[str, Any]:
        body = dpo_body("bad-input", model, kw.pop("dataset_id", source), **kw)
        return body

    no_model = dpo()
    del no_model["finetuned_model"]
    bad_loss = dpo(loss_type="wasserstein")
    searching = dpo()
    searching["hyperparam_search_config"] = {"lr": [1e-4, 1e-3]}
    bad_id = dpo()
    bad_id["job_uuid"] = "a b"
    sft_qat = {
        "job_uuid": "bad-input",
        "model": model,
        "training_config": training_config(source),
        "hyperparam_search_config": {},
        "logger_config": {},
        "algorithm_config": {"type": "QAT", "quantizer_name": "int8", "group_size": 32},
    }
    sft_no_model = {k: v for k, v in sft_qat.items() if k not in ("model", "algorithm_config")}
    return [
        ("request without finetuned_model", "POST", "preference-optimize", no_model, 400, "finetuned_model"),
        ("unknown loss_type", "POST", "preference-optimize", bad_loss, 400, "loss_type"),
        ("loss_type kto_pair", "POST", "preference-optimize", dpo(loss_type="kto_pair"), 400, "'kto_pair' is not"),
        ("negative beta", "POST", "preference-optimize", dpo(beta=-0.5), 400, "algorithm_config.beta must be"),
        ("zero epochs", "POST", "preference-optimize", dpo(epochs=0), 400, "training_config.n_epochs must be"),
        ("hyperparameter search", "POST", "preference-optimize", searching, 400, "hyperparam_search_config"),
        ("job_uuid with a space", "POST", "preference-optimize", bad_id, 400, "job_uuid"),
        (
            "dataset_id never registered",
            "POST",
            "preference-optimize",
            dpo(dataset_id="never-registered"),
            400,
            "'never-registered'",
        ),
        (
            "file id never uploaded",
            "POST",
            "preference-optimize",
            dpo(dataset_id="file-0123456789abcdef"),
            400,
            "'file-0123456789abcdef' is not an uploaded file",
        ),
        (
            "uploaded row without chosen",
            "POST",
            "preference-optimize",
            dpo(dataset_id=bad_file_id),
            400,
            "(JSON lines), row 4: field 'chosen' is missing",
        ),
        (
            "SFT with a QAT algorithm_config",
            "POST",
            "supervised-fine-tune",
            sft_qat,
            400,
            "type 'QAT' is not supported",
        ),
        ("SFT without a model", "POST", "supervised-fine-tune", sft_no_model, 400, "model is required"),
        ("status of an unknown job", "GET", "jobs/no-such-job/status", None, 404, "'no-such-job' not found"),
        ("artifacts of an unknown job", "GET", "jobs/no-such-job/artifacts", None, 404, "'no-such-job' not found"),
        ("cancel of an unknown job", "POST", "jobs/no-such-job/cancel", None, 404, "'no-such-job' not found"),
    ]


def test_bad_inputs_get_the_same_answers_on_every_host(host, scenario, stack, http, tiny_model, request):
    bad_file = upload(http, host, BAD_PREFS, "bad.jsonl")
    cases = bad_cases(str(tiny_model), scenario["source"], scenario["file_id"], bad_file)
    cases.append(
        (
            "cancel of a cancelled job",
            "POST",
            f"jobs/{scenario['long']}/cancel",
            None,
            409,
            "already ended as cancelled",
        )
    )
    cases.append(
        (
            "same job_uuid, another request",
            "POST",
            "preference-optimize",
            dpo_body(scenario["short"], tiny_model, scenario["source"], beta=0.3, steps=2),
            409,
            "params.beta: 0.1 then 0.3",
        )
    )
    observed: dict[str, list[Any]] = {}
    failures = []
    for name, method, path, body, want, text in cases:
        resp = http.request(method, f"{PT}/{path}", json=body)
        got = message(resp) if resp.status_code >= 400 else resp.text
        observed[name] = [want, resp.status_code, got]
        if resp.status_code != want or text not in got:
            failures.append(f"{name}: wanted {want} with {text!r}, got {resp.status_code}: {got[:300]}")
    jobs = [j["job_uuid"] for j in http.get(f"{PT}/jobs").json()["data"]]
    assert "bad-input" not in jobs and "a b" not in jobs
    assert stack.server.healthy() and stack.agent.running
    _write_bad_inputs_table(request.config.cache, host, observed)
    assert not failures, "\n".join(failures)


def _write_bad_inputs_table(cache, host: str, observed: dict[str, list[Any]]) -> None:
    """docs/llama-stack-bad-inputs.md from every host's latest observations (kept in pytest's cache)."""
    results = cache.get("trl-nats/llama-stack-bad-inputs", {})
    results[host] = observed
    cache.set("trl-nats/llama-stack-bad-inputs", results)
    names = list(observed)
    for other in results.values():
        names += [n for n in other if n not in names]
    lines = [
        "# Bad inputs to the post_training API on every supported Llama Stack",
        "",
        "Written by `tests/test_provider_hosts.py` (do not edit): each request was sent with plain HTTP to",
        "a real server of each host (llama-stack 0.6.1 native; 0.7.3 and OGX 1.5 through the external API)",
        "with the provider on a real nats-server. The status each host answered; the message is the",
        f"answer of {HOST_NAMES[host]} (the test checks every host's message for the same words).",
        "",
        "| request | expected | " + " | ".join(HOST_NAMES[h] for h in HOSTS) + " | message |",
        "|---|---|" + "---|" * len(HOSTS) + "---|",
    ]
    for name in names:
        want = next((r[name][0] for r in results.values() if name in r), "")
        cells = [str(results[h][name][1]) if name in results.get(h, {}) else "not run" for h in HOSTS]
        msg = next((r[name][2] for h, r in results.items() if name in r and h == host), "")
        msg = " ".join(str(msg).split()).replace("|", "\\|")
        msg = re.sub(r"file-[0-9a-f]{32}", "file-<id>", msg)  # a new id each run: the table stays put
        if len(msg) > 240:
            msg = msg[:237] + "..."
        lines.append(f"| {name} | {want} | " + " | ".join(cells) + f" | {msg} |")
    BAD_INPUTS_DOC.write_text("\n".join(lines) + "\n")


# -- SFT on OGX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_supervised_fine_tune_full_and_lora_complete(host, tiny_model, lora, request, tmp_path):
    if host != "ogx":  # before the stack fixture, so a -k selection does not start a stack to skip
        pytest.skip("SFT on llama-stack 0.6.1 is tests/test_provider_integration.py; the issue asks for OGX")
    http = request.getfixturevalue("http")
    request.getfixturevalue("scenario")  # after it: the agent's one slot is free
    file_id = upload(http, host, rows_of("sft.jsonl", 16), "sft.jsonl")
    job_uuid = f"ogx-sft-{'lora' if lora else 'full'}"
    body: dict[str, Any] = {
        "job_uuid": job_uuid,
        "model": str(tiny_model),
        "training_config": training_config(file_id, steps=2),
        "hyperparam_search_config": {},
        "logger_config": {},
    }
    if lora:
        body["algorithm_config"] = {
            "type": "LoRA",
            "lora_attn_modules": ["q_proj", "v_proj"],
            "apply_lora_to_mlp": False,
            "apply_lora_to_output": False,
            "rank": 4,
            "alpha": 8,
        }
    resp = http.post(f"{PT}/supervised-fine-tune", json=body)
    assert resp.status_code == 200 and resp.json() == {"job_uuid": job_uuid}, resp.text
    final, seen = poll(http, job_uuid, ended, "the end")
    assert final["status"] == "completed", final
    finals = [
        c
        for c in http.get(f"{PT}/jobs/{job_uuid}/artifacts").json()["checkpoints"]
        if c["identifier"].endswith("/final")
    ]
    assert finals
    assert_loads(finals[0]["path"], request.getfixturevalue("stack").nats_url, tmp_path / "final")


# -- the provider hosts install no torch --------------------------------------------------------------

HEAVY = {"torch", "triton", "transformers", "trl", "accelerate", "deepspeed"}


@pytest.mark.parametrize("stack_host", ["llama-stack-0.7", "ogx"])
def test_the_host_venvs_have_no_torch(stack_host):
    """The whole dependency tree of trl-nats-provider[<host>] in its own venv: no deep-learning stack."""
    bin_dir = stack_bin(stack_host)
    out = subprocess.run(
        [
            f"{bin_dir}/python",
            "-c",
            "import importlib.metadata as m, json; "
            "import re; print(json.dumps(sorted(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() "
            "for d in m.distributions())))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert out.returncode == 0, out.stderr
    installed = set(json.loads(out.stdout))
    assert {"trl-nats", "trl-nats-provider"} <= installed
    assert ("ogx" if stack_host == "ogx" else "llama-stack") in installed
    assert not installed & HEAVY, sorted(installed & HEAVY)


# -- OGX's shipped run config serves TLS only --------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_the_shipped_ogx_run_config_serves_https_with_certificates_from_the_environment(tmp_path):
    from trl_nats_provider.stack import SHIPPED_RUN_CONFIGS, LlamaStackError, LlamaStackServer

    from trl_nats.ports import free_port

    bin_dir = stack_bin("ogx")
    env = dict(
        os.environ,
        TRL_NATS_STACK_DIR=str(tmp_path / "state"),
        TRL_NATS_EXTERNAL_APIS_DIR=str(REPO / "providers.d" / "apis"),
        TRL_NATS_SERVERS="nats://127.0.0.1:9",  # the provider connects on first use; health needs no NATS
        OGX_CONFIG_DIR=str(tmp_path / "ogx-config"),
    )
    # without certificates OGX refuses to serve (and exits 0: the log says why)
    port = free_port()
    plain = LlamaStackServer(
        SHIPPED_RUN_CONFIGS["ogx"], port=port, log_path=tmp_path / "plain.log", env=env, stack="ogx", bin_dir=bin_dir
    )
    with pytest.raises(LlamaStackError, match="exited"):
        plain.start(timeout=300)
    assert "TLS required" in (tmp_path / "plain.log").read_text()
    cert, key = _self_signed(tmp_path)
    env.update(TRL_NATS_STACK_TLS_CERT=str(cert), TRL_NATS_STACK_TLS_KEY=str(key))
    proc = subprocess.Popen(
        [f"{bin_dir}/ogx", "run", str(SHIPPED_RUN_CONFIGS["ogx"]), "--port", str(port)],
        env=env,
        stdout=open(tmp_path / "tls.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    verify = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "tls.log").read_text()[-3000:]
            try:
                resp = httpx.get(f"https://127.0.0.1:{port}/v1/health", verify=verify, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "tls.log").read_text()[-3000:]
                time.sleep(0.5)
        assert resp.status_code == 200
        jobs = httpx.get(f"https://127.0.0.1:{port}{PT}/jobs", verify=verify, timeout=60)
        assert jobs.status_code == 503 and "cannot reach NATS" in message(jobs), jobs.text
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
    finally:
        os.killpg(proc.pid, 2)
        proc.wait(30)
