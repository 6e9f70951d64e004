"""DPO and supervised fine-tuning on your own agents with the official ``openai`` SDK.

Start the API (a nats-server, one agent and the gateway on this machine):

    trl-nats serve --embedded

then, with a model the agents can load (a local path or a Hugging Face id):

    python examples/openai_sdk.py --model /path/to/model [--base-url http://127.0.0.1:8080/v1]

The code below is what you would write against OpenAI: only ``base_url`` differs. Without API keys
configured the server serves this machine only and takes any key; with keys, set OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from openai import OpenAI

DATA = Path(__file__).resolve().parent.parent / "trl_nats" / "data"


def preference_file(n: int, start: int = 0) -> bytes:
    """OpenAI's DPO lines, made from the shipped prompt/chosen/rejected rows."""
    lines = []
    for raw in (DATA / "preferences.jsonl").read_text().splitlines()[start : start + n]:
        row = json.loads(raw)
        lines.append(
            {
                "input": {"messages": [{"role": "user", "content": row["prompt"]}]},
                "preferred_output": [{"role": "assistant", "content": row["chosen"]}],
                "non_preferred_output": [{"role": "assistant", "content": row["rejected"]}],
            }
        )
    return "\n".join(json.dumps(line) for line in lines).encode()


def chat_file(n: int, start: int = 0) -> bytes:
    """OpenAI's supervised lines ({"messages": [...]}), made from the shipped prompt/completion rows."""
    lines = []
    for raw in (DATA / "sft.jsonl").read_text().splitlines()[start : start + n]:
        row = json.loads(raw)
        messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]
        lines.append({"messages": messages})
    return "\n".join(json.dumps(line) for line in lines).encode()


def follow(client: OpenAI, job_id: str) -> None:
    """Print the job's new events until it ends (events are listed newest first)."""
    seen: set[str] = set()
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        for event in reversed(client.fine_tuning.jobs.list_events(job_id, limit=50).data):
            if event.id not in seen:
                seen.add(event.id)
                print(f"  [{event.level}] {event.message}")
        if job.status in ("succeeded", "failed", "cancelled"):
            print(f"{job_id}: {job.status}" + (f", model at {job.fine_tuned_model}" if job.fine_tuned_model else ""))
            if job.error:
                print(f"  error: {job.error.message}")
            return
        time.sleep(1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the model to fine-tune: a path or id the agents can load")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"))
    p.add_argument("--rows", type=int, default=8, help="training examples per job")
    args = p.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY", "local"))

    # Preference fine-tuning (DPO)
    prefs = client.files.create(file=("prefs.jsonl", preference_file(args.rows)), purpose="fine-tune")
    print(f"uploaded {prefs.id}: {prefs.status}")
    dpo = client.fine_tuning.jobs.create(
        model=args.model,
        training_file=prefs.id,
        suffix="dpo-example",
        metadata={"example": "openai_sdk"},
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 1, "batch_size": 2}}},
    )
    print(f"DPO job {dpo.id}: {dpo.status}, hyperparameters {dpo.method.dpo.hyperparameters}")
    follow(client, dpo.id)
    for ckpt in client.fine_tuning.jobs.checkpoints.list(dpo.id).data:
        print(f"  checkpoint step {ckpt.step_number}: {ckpt.fine_tuned_model_checkpoint} {ckpt.metrics}")

    # Supervised fine-tuning, evaluated on a validation file at each checkpoint
    train = client.files.create(file=("train.jsonl", chat_file(args.rows)), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", chat_file(4, start=args.rows)), purpose="fine-tune")
    sft = client.fine_tuning.jobs.create(
        model=args.model,
        training_file=train.id,
        validation_file=valid.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
    )
    print(f"supervised job {sft.id}: {sft.status}")
    follow(client, sft.id)
    for ckpt in client.fine_tuning.jobs.checkpoints.list(sft.id).data:
        print(f"  checkpoint step {ckpt.step_number}: valid_loss {ckpt.metrics.valid_loss}")

    print("jobs of this example:", [j.id for j in client.fine_tuning.jobs.list(metadata={"example": "openai_sdk"})])


if __name__ == "__main__":
    main()
