"""``trl-nats pause JOB`` and ``trl-nats resume JOB`` (see ``trl_nats/pausing.py``); added to the parser and
the commands in ``trl_nats/cli/__init__.py``."""

from __future__ import annotations

import anyio

from trl_nats.client import Client
from trl_nats.messages import JobState, encode

S = JobState


def add_parsers(command) -> None:
    p = command("pause", "pause a job: a running one saves a checkpoint at its next step and frees its GPUs")
    p.add_argument("job_id")
    p.add_argument("--wait", action="store_true", help="wait until it is paused")
    r = command("resume", "queue a paused job again; any agent continues it from its checkpoint")
    r.add_argument("job_id")


async def cmd_pause(client: Client, args) -> int:
    record = await client.job(args.job_id).pause()
    if args.wait and record.state is S.pausing:
        with anyio.fail_after(3600):
            while record.state is S.pausing:
                await anyio.sleep(0.5)
                record = await client.job(args.job_id).status()
    if args.json:
        print(encode(record).decode())
    elif record.state is S.pausing:
        print(f"{record.job_id}: pausing; agent {record.owner} saves a checkpoint at the next step, then stops")
    else:
        ckpt = record.latest_checkpoint
        at = f" at step {ckpt.step} ({ckpt.location})" if ckpt and ckpt.location else ""
        print(f"{record.job_id}: {record.state.value}{at}")
    return 0


async def cmd_resume(client: Client, args) -> int:
    record = await client.job(args.job_id).resume()
    if args.json:
        print(encode(record).decode())
    else:
        ckpt = record.latest_checkpoint
        at = f"from step {ckpt.step}" if ckpt and ckpt.location else "from the start"
        print(f"{record.job_id}: queued again in {record.spec.resources.queue}; continues {at}")
    return 0


COMMANDS = {"pause": cmd_pause, "resume": cmd_resume}
