"""DPO through Llama Stack on this machine: ``python -m trl_nats_provider.demo``.

Brings up the embedded default (a nats-server, one agent, a ``llama stack
run`` server with ``remote::trl_nats``), builds a tiny model, registers the
shipped preference dataset, calls ``preference_optimize`` over plain HTTP
(the same request on every host), shows live progress until the job
completes and lists its checkpoints. Everything is stopped at the end, and
on Ctrl-C (which also cancels the job). State lives under ``--state-dir``.

``--stack 0.7`` / ``--stack ogx`` run llama-stack 0.7.x or OGX instead of
0.6.1 (``--stack-bin``: the bin/ of their venv, which ``scripts/demo.sh``
makes); there the rows are uploaded to the stack's Files API.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

DATASET_ID = "trl-nats-preferences"
STACKS = {"0.6": "llama-stack-0.6", "0.7": "llama-stack-0.7", "ogx": "ogx"}
PT = "/v1alpha/post-training"
TERMINAL = ("completed", "failed", "cancelled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trl_nats_provider.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", default=".state/demo", help="where nats, the agent and Llama Stack keep state")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="the agent's device")
    p.add_argument("--gpus", type=int, default=2, help="processes (GPUs) the job trains on, with FSDP2 when > 1")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps (max_steps_per_epoch, one epoch)")
    p.add_argument("--port", type=int, default=0, help="Llama Stack port (default: a free one)")
    p.add_argument("--stack", choices=sorted(STACKS), default="0.6", help="llama-stack 0.6.1, 0.7.x or OGX")
    p.add_argument(
        "--stack-bin", default=None, help="bin/ of the venv with that stack (default: this interpreter's, for 0.6)"
    )
    return p.parse_args(argv)


def say(text: str) -> None:
    print(text, flush=True)


def _ok(resp: Any) -> Any:
    if resp.status_code >= 400:
        try:
            detail = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = resp.text
        raise RuntimeError(f"{resp.request.method} {resp.request.url.path} answered {resp.status_code}: {detail}")
    return resp.json()


def register_dataset(client: Any, path: Path, dataset_id: str = DATASET_ID) -> int:
    """Register the rows of a JSON-lines file as a Llama Stack dataset (once: registrations persist)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    existing = {d["identifier"] for d in _ok(client.get("/v1beta/datasets"))["data"]}
    if dataset_id not in existing:
        _ok(
            client.post(
                "/v1beta/datasets",
                json={
                    "dataset_id": dataset_id,
                    "purpose": "post-training/messages",
                    "source": {"type": "rows", "rows": rows},
                },
            )
        )
    return len(rows)


def upload_rows(client: Any, path: Path, purpose: str) -> tuple[str, int]:
    """Upload a JSON-lines file to the stack's Files API; returns the file id and its row count."""
    data = path.read_bytes()
    file = _ok(
        client.post("/v1/files", files={"file": (path.name, data, "application/jsonl")}, data={"purpose": purpose})
    )
    return file["id"], sum(1 for line in data.splitlines() if line.strip())


def job_status(client: Any, job_uuid: str) -> dict[str, Any]:
    return _ok(client.get(f"{PT}/jobs/{job_uuid}/status"))


def job_artifacts(client: Any, job_uuid: str) -> dict[str, Any]:
    return _ok(client.get(f"{PT}/jobs/{job_uuid}/artifacts"))


def cancel_job(client: Any, job_uuid: str) -> None:
    _ok(client.post(f"{PT}/jobs/{job_uuid}/cancel"))


def progress_line(status: dict[str, Any]) -> str:
    res = status.get("resources_allocated") or {}
    prog = res.get("progress") or {}
    metrics = prog.get("metrics") or {}
    total = prog.get("total_steps")
    parts = [f"step {prog.get('step', 0)}" + (f"/{total}" if total else "")]
    if "loss" not in metrics and "train_loss" in metrics:  # the run's summary replaces per-step metrics at the end
        parts.append(f"mean loss {metrics['train_loss']:.4f}")
    for key, label in (("loss", "loss"), ("rewards/margins", "reward margin"), ("rewards/accuracies", "accuracy")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.4f}")
    return "  ".join(parts)


def follow(client: Any, job_uuid: str, poll: float = 1.0) -> dict[str, Any]:
    """Print state changes and every new step until the job ends; returns the last status."""
    last_state, last_step = None, -1
    while True:
        status = job_status(client, job_uuid)
        state = status["status"]
        res = status.get("resources_allocated") or {}
        step = (res.get("progress") or {}).get("step", 0)
        if step != last_step and step > 0:
            say(f"[{job_uuid}]   {progress_line(status)}")
            last_step = step
        if state != last_state:
            where = ""
            if res.get("node"):
                where = f" on node {res['node']} (GPUs {res['gpus']}, agent {res['nodes'][0]['agent']})"
            say(f"[{job_uuid}] {state}{where}")
            last_state = state
        if state in TERMINAL:
            if res.get("error"):
                say(f"[{job_uuid}] error: {res['error']}")
            return status
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    host = STACKS[args.stack]

    from trl_nats_provider.embedded import EmbeddedStack, build_tiny_model, shipped_dataset

    state = Path(args.state_dir).resolve()
    dataset = shipped_dataset("preferences.jsonl")
    say(f"state under {state}")
    say("building a tiny Llama-style model and tokenizer (reused on later runs) ...")
    model = build_tiny_model(state / "tiny-model", dataset)

    stack = EmbeddedStack(
        state,
        device=args.device,
        slots=args.gpus,
        gpus_per_node=args.gpus,
        port=args.port,
        agent_log_level="WARNING",
        stack=host,
        stack_bin=args.stack_bin,
    )
    job_uuid = f"demo-dpo-{uuid.uuid4().hex[:8]}"
    client = None
    finished = False
    try:
        run = "ogx run" if host == "ogx" else "llama stack run"
        say(f"starting nats-server, one agent and `{run}` ({host}) with remote::trl_nats ...")
        stack.start()
        say(f"nats-server {stack.nats_url}; {host} {stack.url} (log {stack.server.log_path})")
        client = httpx.Client(base_url=stack.url, timeout=120)
        if host == "llama-stack-0.6":
            rows = register_dataset(client, dataset)
            dataset_id = DATASET_ID
            say(f"registered dataset {DATASET_ID!r}: {rows} preference pairs from {dataset.name}")
        else:
            dataset_id, rows = upload_rows(client, dataset, "fine-tune" if host == "ogx" else "assistants")
            say(f"uploaded {dataset.name} to the Files API as {dataset_id}: {rows} preference pairs")
        body = dict(
            job_uuid=job_uuid,
            finetuned_model=str(model),
            algorithm_config={"beta": 0.1, "loss_type": "sigmoid"},
            training_config={
                "n_epochs": 1,
                "max_steps_per_epoch": args.steps,
                "gradient_accumulation_steps": 1,
                "data_config": {
                    "dataset_id": dataset_id,
                    "batch_size": 4,
                    "shuffle": True,
                    "data_format": "instruct",
                },
                "optimizer_config": {"optimizer_type": "adamw", "lr": 5e-4, "weight_decay": 0.0, "num_warmup_steps": 0},
                "dtype": "fp32",
            },
            hyperparam_search_config={},
            logger_config={},
        )
        job_id = _ok(client.post(f"{PT}/preference-optimize", json=body))["job_uuid"]
        say(f"preference_optimize -> job {job_id}; follow it on NATS too:")
        say(f"  nats --server {stack.nats_url} sub 'trl.events.{job_id}.>'")
        say(f"  nats --server {stack.nats_url} kv watch trl_jobs {job_id}")
        final = follow(client, job_id)
        finished = True
        artifacts = job_artifacts(client, job_id)
        say(f"{len(artifacts['checkpoints'])} checkpoint(s):")
        for ckpt in artifacts["checkpoints"]:
            m = ckpt.get("training_metrics") or {}
            loss = f"  train_loss {m['train_loss']:.4f}" if m.get("train_loss") is not None else ""
            say(f"  {ckpt['identifier']}  epoch {ckpt['epoch']}  {ckpt['path']}{loss}")
        return 0 if final["status"] == "completed" else 1
    except KeyboardInterrupt:
        say("interrupted: cancelling the job and shutting down ...")
        if client is not None and not finished:
            try:
                cancel_job(client, job_uuid)
            except Exception as exc:  # not submitted yet, or already over: nothing to cancel
                say(f"  (no cancel: {exc})")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        stack.stop()
        say("stopped Llama Stack, the agent and nats-server")


if __name__ == "__main__":
    sys.exit(main())
