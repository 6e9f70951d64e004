"""Walkthrough: DPO (or SFT) through a running Llama Stack with the remote::trl_nats provider.

``python -m trl_nats_provider.demo`` brings everything up by itself; this
script is the same flow against a stack you run, step by step, so you can
see each call. Bring up the parts (three terminals, or add ``&``):

    # 1. NATS with JetStream and one agent (CPU mode when there is no GPU)
    trl-nats up --state-dir .state/up --port 4222

    # 2. a model the agent can load; here a tiny one built locally
    python -m trl_nats_agent.testing.tiny .state/tiny-model --dataset trl_nats/data/preferences.jsonl

    # 3. Llama Stack with the provider (datasetio inline::localfs + post_training remote::trl_nats)
    TRL_NATS_SERVERS=nats://127.0.0.1:4222 TRL_NATS_STACK_DIR=.state/stack \\
        llama stack run provider/trl_nats_provider/run.yaml --port 8321

Then:

    python examples/llama_stack_walkthrough.py --model .state/tiny-model

Follow the job on NATS while it runs (everything there is plain JSON):

    nats sub 'trl.events.<job>.>'          # live status, metrics, checkpoint and log events
    nats kv watch trl_jobs <job>           # the job record: state, owner, step, checkpoints
    nats stream view TRL_EVENTS            # the replayable history of every job
    nats kv watch trl_agents               # agent heartbeats: GPUs, free slots, running jobs

The 0.6.1 client's ``job.status/artifacts/cancel`` call paths the 0.6.1
server no longer has (404), so this script calls those three routes
directly with ``client.get`` / ``client.post``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIPPED = {
    "dpo": HERE.parent / "trl_nats" / "data" / "preferences.jsonl",
    "sft": HERE.parent / "trl_nats" / "data" / "sft.jsonl",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="DPO or SFT through a running Llama Stack with remote::trl_nats")
    p.add_argument("--url", default=os.environ.get("LLAMA_STACK_URL", "http://127.0.0.1:8321"), help="Llama Stack URL")
    p.add_argument("--model", required=True, help="model path or id, as the agents see it")
    p.add_argument("--kind", choices=["dpo", "sft"], default="dpo")
    p.add_argument("--dataset", help="JSON-lines rows (default: the shipped preferences.jsonl / sft.jsonl)")
    p.add_argument("--dataset-id", help="Llama Stack dataset id (default: walkthrough-<kind>)")
    p.add_argument("--steps", type=int, default=10, help="max_steps_per_epoch (one epoch)")
    p.add_argument("--job-uuid", help="job id (default: a new one); resending an id returns the same job")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from llama_stack_client import LlamaStackClient

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the 0.6.1 client turns request logging on
    client = LlamaStackClient(base_url=args.url, max_retries=0)

    # 1. Register the rows as a dataset (registrations persist in the stack's kvstore).
    dataset_id = args.dataset_id or f"walkthrough-{args.kind}"
    path = Path(args.dataset) if args.dataset else SHIPPED[args.kind]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if dataset_id not in {d.identifier for d in client.beta.datasets.list()}:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the 0.6.1 client marks datasets deprecated
            client.beta.datasets.register(
                dataset_id=dataset_id, purpose="post-training/messages", source={"type": "rows", "rows": rows}
            )
    print(f"dataset {dataset_id}: {len(rows)} rows from {path}")

    # 2. Submit. Every row is checked first: a bad one is a 400 naming the row and field.
    job_uuid = args.job_uuid or f"walkthrough-{args.kind}-{uuid.uuid4().hex[:8]}"
    training_config = {
        "n_epochs": 1,
        "max_steps_per_epoch": args.steps,
        "data_config": {"dataset_id": dataset_id, "batch_size": 4, "shuffle": True, "data_format": "instruct"},
        "optimizer_config": {"optimizer_type": "adamw", "lr": 5e-4, "weight_decay": 0.0, "num_warmup_steps": 0},
        "dtype": "fp32",
    }
    if args.kind == "dpo":
        job = client.alpha.post_training.preference_optimize(
            job_uuid=job_uuid,
            finetuned_model=args.model,
            algorithm_config={"beta": 0.1, "loss_type": "sigmoid"},
            training_config=training_config,
            hyperparam_search_config={},
            logger_config={},
        )
    else:
        job = client.alpha.post_training.supervised_fine_tune(
            job_uuid=job_uuid,
            model=args.model,
            training_config=training_config,
            hyperparam_search_config={},
            logger_config={},
        )
    print(f"submitted {job.job_uuid}; on NATS: nats sub 'trl.events.{job.job_uuid}.>'")

    # 3. Poll status until the job ends: node, GPUs and live metrics are in resources_allocated.
    last = None
    while True:
        status = client.get(f"/v1alpha/post-training/jobs/{job.job_uuid}/status", cast_to=object)
        res = status.get("resources_allocated") or {}
        progress = res.get("progress") or {}
        line = f"{status['status']:<11} node={res.get('node')} gpus={res.get('gpus')} step={progress.get('step')}"
        loss = (progress.get("metrics") or {}).get("loss")
        if loss is not None:
            line += f" loss={loss:.4f}"
        if line != last:
            print(line)
            last = line
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(1)

    # 4. The job list and the artifacts: each checkpoint's path is where it is stored (a nats:// URI that
    #    `trl-nats pull <job> --checkpoint STEP` fetches from anywhere, or a shared path).
    jobs = client.get("/v1alpha/post-training/jobs", cast_to=object)["data"]
    print(f"{len(jobs)} job(s) known to the stack")
    artifacts = client.get(f"/v1alpha/post-training/jobs/{job.job_uuid}/artifacts", cast_to=object)
    for ckpt in artifacts["checkpoints"]:
        print(f"checkpoint {ckpt['identifier']} epoch {ckpt['epoch']} at {ckpt['path']}")
    if status["status"] != "completed":
        print(f"job ended as {status['status']}: {res.get('error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
