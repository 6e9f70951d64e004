"""The job commands: submit, watch, jobs, status, cancel, agents, plot. Each takes a connected Client."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

import msgspec

from trl_nats.cli.render import Progress, agents_table, dump, job_lines, jobs_table
from trl_nats.client import Client, JobAlreadyFinished, Unschedulable
from trl_nats.messages import BadMessage, JobKind, JobSpec, Resources, TrainingParams, decode
from trl_nats.rows import RowError, RowsCheck, read_jsonl
from trl_nats.settings import settings_from_args

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class CliError(Exception):
    """A mistake the user can fix; main prints it (no traceback) and exits 2."""


def shipped_dataset(kind: JobKind) -> Path:
    """The dataset that ships with trl_nats for ``kind``: the default of ``submit`` and the demo."""
    return DATA_DIR / ("preferences.jsonl" if kind is JobKind.dpo else "sft.jsonl")


def _set_params(params: TrainingParams, pairs: list[str]) -> TrainingParams:
    values = msgspec.structs.asdict(params)
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        if key not in values:
            raise CliError(f"--set {key}: unknown parameter; known: {', '.join(sorted(values))}")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    try:
        return msgspec.convert(values, TrainingParams)
    except msgspec.ValidationError as exc:
        raise CliError(f"--set: {exc}") from None


def read_dataset(path: str, kind: JobKind) -> RowsCheck:
    """The dataset file's rows, checked against the one row schema before the job is queued."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"dataset file {path} does not exist")
    try:
        return read_jsonl(p.read_bytes(), kind)
    except OSError as exc:
        raise CliError(f"cannot read dataset file {path}: {exc}") from None
    except RowError as exc:
        raise CliError(f"dataset {path}: {exc}") from None


async def cmd_submit(client: Client, args) -> int:
    if args.spec:
        try:
            spec = decode(Path(args.spec).read_bytes(), JobSpec)
        except (OSError, BadMessage) as exc:
            raise CliError(f"--spec {args.spec}: {exc}") from None
    else:
        kind = JobKind(args.kind)
        if not args.model:
            raise CliError("--model is required (a Hugging Face id or a path on the agents)")
        dataset = args.dataset or str(shipped_dataset(kind))
        rows = read_dataset(dataset, kind).rows
        params = _set_params(TrainingParams(), args.set or [])
        try:
            spec = JobSpec(
                job_id=args.job_id or f"{kind.value}-{uuid.uuid4().hex[:10]}",
                kind=kind,
                model=args.model,
                dataset=await client.upload_dataset(rows),
                params=params,
                resources=Resources(nodes=args.nodes, gpus_per_node=args.gpus, gpu_type=args.gpu_type),
                output_dir=args.output_dir,
                max_attempts=args.max_attempts,
            )
            spec = msgspec.convert(msgspec.to_builtins(spec), JobSpec)  # run the field constraints
        except msgspec.ValidationError as exc:
            raise CliError(str(exc)) from None
    try:
        job = await client.submit(spec)
    except (BadMessage, Unschedulable) as exc:
        raise CliError(str(exc)) from None
    if not await client.list_agents():
        print(
            f"trl-nats: note: no agent is up; the job waits in pool {spec.resources.pool} until one that fits joins",
            file=sys.stderr,
        )
    if args.json:
        print(dump({"job_id": job.id}))
    else:
        print(f"submitted {job.id}  (follow it: trl-nats watch {job.id})")
    if args.watch:
        return await cmd_watch(client, argparse.Namespace(job_id=job.id, json=args.json, from_start=True))
    return 0


async def cmd_watch(client: Client, args) -> int:
    job = client.job(args.job_id)
    progress = Progress()
    last = None
    try:
        async for event in job.events(from_start=args.from_start):
            if args.json:
                print(dump(event), flush=True)
            else:
                progress.show(event)
            last = event
    finally:
        progress.close()
    record = await job.status()
    if not args.json:
        print(f"{record.job_id}: {record.state.value}" + (f" — {record.error}" if record.error else ""))
        final = [c for c in record.checkpoints if c.final]
        if final:
            print(f"final model: {final[-1].path} (node {final[-1].node})")
    del last
    return 0 if record.state.value == "completed" else 1


async def cmd_jobs(client: Client, args) -> int:
    records = await client.list_jobs()
    positions = await client.queue_positions(records)
    gangs = {g.job_id: g for g in await client.list_gangs()}
    if args.json:
        for r in records:
            queue = positions.get(r.job_id)
            print(
                dump(
                    {
                        **msgspec.to_builtins(r),
                        "queue": queue[0] if queue else None,
                        "position": queue[1] if queue else None,
                    }
                )
            )
        return 0
    if not records:
        print("no jobs")
    if not records:
        print("no jobs")
        return 0
    print(jobs_table(records, positions, gangs))
    return 0


async def cmd_status(client: Client, args) -> int:
    r = await client.job(args.job_id).status()
    if args.json:
        print(dump(r))
        return 0
    print("\n".join(job_lines(r)))
    return 0


async def cmd_cancel(client: Client, args) -> int:
    try:
        r = await client.cancel(args.job_id)
    except JobAlreadyFinished as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(dump(r))
    elif r.state.terminal:
        print(f"{r.job_id}: cancelled")
    else:
        print(f"{r.job_id}: cancel requested; agent {r.owner} is stopping it")
        if args.wait:
            r = await client.job(args.job_id).wait()
            print(f"{r.job_id}: {r.state.value}")
    return 0


async def cmd_agents(client: Client, args) -> int:
    agents = await client.list_agents()
    if args.json:
        for a in agents:
            print(dump(a))
        return 0
    if not agents:
        print("no agents (none has sent a heartbeat within its TTL)")
        return 0
    print(agents_table(agents))
    return 0


async def job_history(client: Client, job_id: str, idle_s: float = 2.0) -> list:
    """Every event the job has so far: all of it for a finished job, what is stored for a running one."""
    record = await client.job(job_id).status()
    events = []
    stream = client.job(job_id).events(from_start=True, until_done=record.state.terminal)
    try:
        while True:
            try:
                events.append(await asyncio.wait_for(anext(stream), idle_s))
            except (StopAsyncIteration, TimeoutError):
                break
    finally:
        await stream.aclose()
    return events


async def cmd_plot(client: Client, args) -> int:
    from trl_nats.plot import PlotUnavailable, plot_job

    events = await job_history(client, args.job_id)
    out = args.output or f"{args.job_id}.png"
    try:
        path = plot_job(args.job_id, events, out)
    except (PlotUnavailable, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(dump({"job_id": args.job_id, "png": str(path)}) if args.json else f"wrote {path}")
    return 0


COMMANDS = {
    "submit": cmd_submit,
    "watch": cmd_watch,
    "jobs": cmd_jobs,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "agents": cmd_agents,
    "plot": cmd_plot,
}


async def run_with(args: argparse.Namespace, command) -> int:
    """Connect with the settings ``args`` name, run ``command(client, args)``, close."""
    client = await Client.connect(settings_from_args(args), name="trl-nats demo")
    try:
        return await command(client, args)
    finally:
        await client.close()
