"""``trl-nats``: submit, follow, cancel and list jobs; bring up a local stack.

Human output by default; ``--json`` prints machine-readable JSON (one object
per line for streams) for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from trl_nats import pausing
from trl_nats.artifacts import ArtifactError
from trl_nats.artifacts import cli as artifacts_cli
from trl_nats.client import Client, JobAlreadyFinished, Unschedulable
from trl_nats.messages import (
    DPO_LOSS_TYPES,
    DTYPES,
    AgentRecord,
    BadMessage,
    CheckpointEvent,
    JobKind,
    JobSpec,
    LogEvent,
    MetricsEvent,
    Resources,
    StatusEvent,
    TrainingParams,
    decode,
)
from trl_nats.pausing import CannotPause
from trl_nats.settings import add_connection_args, settings_from_args
from trl_nats.store import JobNotFound

DATA_DIR = Path(__file__).parent / "data"


class CliError(Exception):
    pass


def _dump(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, time.time() - ts)
    if s < 90:
        return f"{s:.0f}s ago"
    if s < 5400:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


# -- progress ------------------------------------------------------------------


class Progress:
    """Renders a job's events as a live progress line (or plain lines when not a terminal)."""

    def __init__(self, stream=sys.stdout, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.t0: float | None = None
        self.step0 = 0
        self._line = False

    def _print(self, text: str) -> None:
        if self._line:
            self.stream.write("\r\033[K")
            self._line = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._line = True
            self.stream.flush()
        else:
            self._print(text)

    def show(self, event) -> None:
        if isinstance(event, StatusEvent):
            self._print(f"[{event.state.value}] {event.message}".rstrip())
        elif isinstance(event, MetricsEvent) and "train_runtime" in event.metrics:
            m = event.metrics
            loss = f", mean loss {m['train_loss']:.4f}" if "train_loss" in m else ""
            self._print(f"trained {event.step} steps in {m['train_runtime']:.1f}s{loss}")
        elif isinstance(event, MetricsEvent):
            self._bar(self.metrics_line(event))
        elif isinstance(event, CheckpointEvent):
            c = event.checkpoint
            self._print(f"checkpoint{' (final)' if c.final else ''} step {c.step} -> {c.path}")
        elif isinstance(event, LogEvent):
            self._print(event.line if event.level in ("info", "debug") else f"{event.level}: {event.line}")

    def metrics_line(self, e: MetricsEvent) -> str:
        now = time.monotonic()
        if self.t0 is None:
            self.t0, self.step0 = now, e.step
        total = e.total_steps or 0
        width = 24
        done = int(width * e.step / total) if total else 0
        bar = "#" * done + "." * (width - done)
        parts = [f"step {e.step}/{total or '?'} [{bar}]"]
        m = e.metrics
        if "loss" in m:
            parts.append(f"loss {m['loss']:.4f}")
        if "rewards/margins" in m:
            parts.append(f"margin {m['rewards/margins']:+.4f}")
        if "rewards/accuracies" in m:
            parts.append(f"acc {m['rewards/accuracies']:.2f}")
        rate_steps = e.step - self.step0
        if total and rate_steps > 0:
            eta = (now - self.t0) / rate_steps * (total - e.step)
            parts.append(f"eta {eta:.0f}s")
        return "  ".join(parts)

    def close(self) -> None:
        if self._line:
            self.stream.write("\n")
            self._line = False


# -- commands ------------------------------------------------------------------


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


def _read_rows(path: str) -> list[dict]:
    p = Path(path)
    if not p.exists():
        raise CliError(f"dataset file {path} does not exist")
    rows = []
    with open(p) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise CliError(f"{path}:{n}: not valid JSON ({exc}); the dataset must be JSON lines") from None
            if not isinstance(row, dict):
                raise CliError(f"{path}:{n}: each line must be a JSON object")
            rows.append(row)
    if not rows:
        raise CliError(f"dataset file {path} has no rows")
    return rows


def check_rows(rows: list[dict], kind: JobKind) -> None:
    """Field-level checks a user should hear about before the job is queued."""
    need = ("prompt", "chosen", "rejected") if kind is JobKind.dpo else None
    for i, row in enumerate(rows, 1):
        if need:
            for key in need:
                v = row.get(key)
                if v is None:
                    raise CliError(f"row {i}: missing field {key!r} (DPO rows need prompt, chosen and rejected)")
                if not (isinstance(v, str) and v.strip()) and not (isinstance(v, list) and v):
                    raise CliError(f"row {i}: field {key!r} must be a non-empty string or a list of messages")
        elif not ("messages" in row or ("prompt" in row and "completion" in row) or "text" in row):
            raise CliError(f"row {i}: SFT rows need 'messages', 'prompt'+'completion' or 'text'")


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
        dataset = args.dataset or str(DATA_DIR / ("preferences.jsonl" if kind is JobKind.dpo else "sft.jsonl"))
        rows = _read_rows(dataset)
        check_rows(rows, kind)
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
        print(_dump({"job_id": job.id}))
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
                print(_dump(event), flush=True)
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
                _dump(
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
        return 0
    rows = []
    for r in records:
        where = r.owner or "-"
        if r.job_id in positions:
            queue, pos = positions[r.job_id]
            gang = gangs.get(r.job_id)
            if gang is not None and gang.state.value == "forming":
                where = f"forming {len(gang.members)}/{gang.nodes} nodes"
            else:
                where = f"#{pos} in {queue}"
        elif r.spec.resources.nodes > 1 and r.allocation:
            where = f"{r.owner} +{len(r.allocation) - 1} node(s)"
        step = f"{r.step}/{r.total_steps}" if r.total_steps else (str(r.step) if r.step else "-")
        loss = r.last_metrics.get("loss")
        rows.append(
            [
                r.job_id,
                r.spec.kind.value,
                r.state.value,
                step,
                f"{loss:.4f}" if loss is not None else "-",
                f"{r.spec.resources.nodes}x{r.spec.resources.gpus_per_node}",
                where,
                str(r.attempt),
                _ago(r.submitted_at),
            ]
        )
    print(_table(rows, ["JOB", "KIND", "STATE", "STEP", "LOSS", "NODESxGPUS", "AGENT / QUEUE", "ATTEMPT", "SUBMITTED"]))
    return 0


async def cmd_status(client: Client, args) -> int:
    r = await client.job(args.job_id).status()
    if args.json:
        print(_dump(r))
        return 0
    print(f"job        {r.job_id} ({r.spec.kind.value}, model {r.spec.model})")
    print(
        f"state      {r.state.value}" + (" (cancel requested)" if r.cancel_requested and not r.state.terminal else "")
    )
    print(f"attempt    {r.attempt} of {r.spec.max_attempts}")
    print(f"submitted  {_ago(r.submitted_at)}; started {_ago(r.started_at)}; finished {_ago(r.finished_at)}")
    for a in r.allocation:
        print(f"running on {a.agent} (node {a.node}, {'GPUs' if a.gpu_type else 'CPU slots'} {a.gpus})")
    if r.total_steps:
        print(f"progress   step {r.step}/{r.total_steps}")
    if r.last_metrics:
        print("metrics    " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.last_metrics.items())))
    for c in r.checkpoints:
        where = f"{c.location} ({c.bytes or 0:,} bytes)" if c.location else c.path
        print(f"checkpoint step {c.step}{' final' if c.final else ''}: {where}")
    if r.error:
        print(f"error      {r.error}")
    return 0


async def cmd_cancel(client: Client, args) -> int:
    try:
        r = await client.cancel(args.job_id)
    except JobAlreadyFinished as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(_dump(r))
    elif r.state.terminal:
        print(f"{r.job_id}: cancelled")
    else:
        print(f"{r.job_id}: cancel requested; agent {r.owner} is stopping it")
        if args.wait:
            r = await client.job(args.job_id).wait()
            print(f"{r.job_id}: {r.state.value}")
    return 0


async def cmd_agents(client: Client, args) -> int:
    agents: list[AgentRecord] = await client.list_agents()
    if args.json:
        for a in agents:
            print(_dump(a))
        return 0
    if not agents:
        print("no agents (none has sent a heartbeat within its TTL)")
        return 0
    rows = []
    for a in agents:
        kinds = {g.name for g in a.gpus}
        mem = sum(g.memory_mib for g in a.gpus)
        util = [g.utilization for g in a.gpus if g.utilization is not None]
        rows.append(
            [
                a.agent_id,
                a.node,
                f"{len(a.gpus)}x {'/'.join(sorted(kinds))}" + (f" {mem // 1024}GiB" if mem else ""),
                f"{len(a.free_gpus)}/{len(a.gpus)}",
                ",".join(a.running_jobs) or "-",
                f"{sum(util) / len(util):.0f}%" if util else "-",
                a.version,
                _ago(a.heartbeat_at),
            ]
        )
    print(_table(rows, ["AGENT", "NODE", "GPUS", "FREE", "RUNNING", "UTIL", "VERSION", "HEARTBEAT"]))
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
    print(_dump({"job_id": args.job_id, "png": str(path)}) if args.json else f"wrote {path}")
    return 0


# -- up: the embedded stack ----------------------------------------------------


def agent_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("trl_nats_agent") is not None


def _agent_process(state_dir: Path, device: str, slots: int, server_url: str, *extra: str) -> subprocess.Popen:
    """The node agent as a child process of this command, talking to ``server_url``."""
    cmd = [sys.executable, "-m", "trl_nats_agent", "--state-dir", str(state_dir), "--device", device]
    cmd += ["--slots", str(slots), *extra]
    return subprocess.Popen(cmd, env=dict(os.environ, TRL_NATS_SERVERS=server_url))


def _stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_up(args) -> int:
    from trl_nats.server import EmbeddedNats

    state = Path(args.state_dir).resolve()
    server = EmbeddedNats(state / "nats", host=args.host, port=args.port).start()
    procs: list[subprocess.Popen] = []
    print(f"nats-server {server.url} (JetStream store {state / 'nats'})", flush=True)
    try:
        if not args.no_agent:
            if not agent_available():
                raise CliError("the agent package is not installed here: pip install ./agents (or use --no-agent)")
            procs.append(_agent_process(state / "agent", args.device, args.slots, server.url))
            print(f"agent started ({args.device}, state {state / 'agent'})", flush=True)
        print(f"export TRL_NATS_SERVERS={server.url}   # then: trl-nats submit / jobs / watch / agents", flush=True)
        stop = {"flag": False}

        def on_signal(*_: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop["flag"]:
            for p in procs:
                if p.poll() is not None:
                    raise CliError(f"agent exited with code {p.returncode}")
            time.sleep(0.5)
    finally:
        for p in procs:
            _stop_process(p)
        server.stop()
        print("stopped", flush=True)
    return 0


def run_demo(args) -> int:
    """Embedded nats-server + one CPU/GPU agent, a tiny model built here, the shipped dataset, live progress."""
    from trl_nats.server import EmbeddedNats

    if not agent_available():
        raise CliError("the demo trains on this machine, so it needs the agent: pip install ./agents")
    state = Path(args.state_dir).resolve()
    model_dir = state / "tiny-model"
    dataset = DATA_DIR / "preferences.jsonl"
    if not (model_dir / "config.json").exists():
        print(f"building a tiny Llama-style model and tokenizer in {model_dir} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "trl_nats_agent.tiny", str(model_dir), "--dataset", str(dataset)], check=True
        )
    server = EmbeddedNats(state / "nats").start()
    print(f"nats-server {server.url}", flush=True)
    agent = _agent_process(state / "agent", args.device, args.gpus, server.url, "--log-level", "WARNING")
    try:
        ns = argparse.Namespace(
            servers=server.url,
            kind="dpo",
            model=str(model_dir),
            dataset=str(dataset),
            job_id=f"demo-{uuid.uuid4().hex[:8]}",
            gpus=args.gpus,
            nodes=1,
            gpu_type=None,
            output_dir=None,
            max_attempts=1,
            set=[
                f"max_steps={args.steps}",
                "per_device_batch_size=4",
                "learning_rate=5e-4",
                "max_length=256",
                "beta=0.1",
            ],
            spec=None,
            watch=True,
            json=False,
        )
        print(f"submitting a DPO job on {args.gpus} process(es) with FSDP2: {args.steps} steps", flush=True)
        return asyncio.run(_run_with(ns, cmd_submit))
    finally:
        _stop_process(agent)
        server.stop()


async def _run_with(args, command) -> int:
    client = await Client.connect(settings_from_args(args), name="trl-nats demo")
    try:
        return await command(client, args)
    finally:
        await client.close()


# -- entry point ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trl-nats", description="DPO and SFT jobs on a fleet of GPU nodes over NATS")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, json_flag: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        add_connection_args(sp)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable JSON output")
        return sp

    sub.add_parser("agent", help="run the node agent on this machine (see trl-nats agent --help)", add_help=False)
    up = command("up", "run an embedded nats-server and one agent until Ctrl-C", json_flag=False)
    up.add_argument("--state-dir", default=".state/up")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=4222)
    up.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    up.add_argument("--slots", type=int, default=2, help="CPU mode: training processes the agent offers")
    up.add_argument("--no-agent", action="store_true")

    d = sub.add_parser("demo", help="train a tiny model end to end on this machine (embedded stack)")
    d.add_argument("--state-dir", default=".state/demo-nats")
    d.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    d.add_argument("--gpus", type=int, default=2, help="processes (GPUs or CPU slots) for the job")
    d.add_argument("--steps", type=int, default=40)

    s = command("submit", "queue a DPO or SFT job")
    s.add_argument("--kind", choices=[k.value for k in JobKind], default="dpo")
    s.add_argument("--model", help="Hugging Face id or a path on the agents")
    s.add_argument("--dataset", help="JSON-lines file (default: the shipped dataset for --kind)")
    s.add_argument("--job-id", help="id to use (resubmitting the same id does not start a second job)")
    s.add_argument("--gpus", type=int, default=1, help="GPUs (CPU slots) per node")
    s.add_argument("--nodes", type=int, default=1, help="nodes (one agent each) for a multi-node job")
    s.add_argument("--gpu-type", help="e.g. H100; default any")
    s.add_argument("--output-dir", help="where the agent writes checkpoints (default: its own outputs dir)")
    s.add_argument("--max-attempts", type=int, default=3)
    s.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"a training parameter, e.g. beta=0.2 loss_type=ipo max_steps=100 (loss types: "
        f"{', '.join(DPO_LOSS_TYPES)}; dtypes: {', '.join(DTYPES)})",
    )
    s.add_argument("--spec", help="submit a full JobSpec JSON file instead")
    s.add_argument("--watch", action="store_true", help="follow the job until it ends")

    w = command("watch", "follow a job's events live (its history first)")
    w.add_argument("job_id")
    w.add_argument("--new-only", dest="from_start", action="store_false", help="skip the history")
    command("jobs", "list jobs")
    st = command("status", "show one job")
    st.add_argument("job_id")
    c = command("cancel", "cancel a job")
    c.add_argument("job_id")
    c.add_argument("--wait", action="store_true", help="wait until it has stopped")
    command("agents", "list the agents that are heartbeating")
    pl = command("plot", "draw a job's loss, reward margin and accuracy curves to a PNG (needs trl-nats[plot])")
    pl.add_argument("job_id")
    pl.add_argument("-o", "--output", help="PNG path (default <job>.png)")
    artifacts_cli.add_parsers(command)
    pausing.add_parsers(command)
    return p


COMMANDS = {
    "submit": cmd_submit,
    "watch": cmd_watch,
    "jobs": cmd_jobs,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "agents": cmd_agents,
    "plot": cmd_plot,
    **artifacts_cli.COMMANDS,
    **pausing.COMMANDS,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["agent"]:  # the node agent is its own package: hand over its arguments untouched
        if not agent_available():
            print(
                "trl-nats: the agent is not installed here: pip install ./agents (it brings torch and TRL)",
                file=sys.stderr,
            )
            sys.exit(2)
        from trl_nats_agent.__main__ import main as agent_main

        agent_main(argv[1:])
        return
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            code = run_up(args)
        elif args.command == "demo":
            code = run_demo(args)
        else:
            code = asyncio.run(_run_with(args, COMMANDS[args.command]))
    except CliError as exc:
        print(f"trl-nats: {exc}", file=sys.stderr)
        code = 2
    except (JobNotFound, BadMessage, ConnectionError, PermissionError, ArtifactError, CannotPause) as exc:
        print(f"trl-nats: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
