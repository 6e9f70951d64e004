"""Artifact throughput: upload and pull of one large file through the NATS object store, against a plain
local file copy of the same file in the same run, and the pull's peak memory at two file sizes.

    python benchmarks/artifacts.py [--size-mb 512] [--rounds 3]

Starts its own nats-server (file storage in a temp dir on the same disk as the files). Each round
copies the file with ``shutil.copyfile``, uploads it as an artifact (``ArtifactStore.put``: hashing,
1 MiB chunks, each chunk acknowledged by JetStream) and pulls it into a fresh directory
(``ArtifactStore.pull``: ordered consumer, sha256 of every byte checked against the manifest).
A fourth row, the server's delivery ceiling, drains the same chunks with a minimal client of the NATS
protocol (one socket read of up to 4 MiB at a time, payloads counted and dropped: no hashing, no disk)
so the pull can be read against what nats-server itself delivers on this machine.
Prints medians, spread (min..max) and ratios. Goal (issue 12): pull >= 1/3 of the copy speed, and
pull memory that does not grow with the file size (measured in a child process per size, ru_maxrss
after the transfer minus before it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trl_nats.artifacts import ArtifactStore  # noqa: E402
from trl_nats.client import Client  # noqa: E402
from trl_nats.server import EmbeddedNats  # noqa: E402
from trl_nats.settings import NatsSettings  # noqa: E402

MB = 1e6


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n] if n < len(block) else block)
            left -= n


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


async def atimed(coro) -> float:
    t = time.perf_counter()
    await coro
    return time.perf_counter() - t


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of this process (all threads) or of ``pid`` (read from /proc)."""
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(name: str, size: int, seconds: list[float]) -> tuple[str, float]:
    rates = [size / MB / s for s in seconds]
    med = statistics.median(rates)
    return f"{name:<28} median {med:8.1f} MB/s   spread {min(rates):7.1f} .. {max(rates):7.1f}", med


MEMORY_CHILD = """
import asyncio, json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from trl_nats.artifacts import ArtifactStore
from trl_nats.client import Client
from trl_nats.settings import NatsSettings

async def main(url, job, warm, dest):
    client = await Client.connect(NatsSettings(servers=[url]))
    store = ArtifactStore.nats(client.topo.artifacts, max_payload=client.nc.max_payload)
    await store.pull(warm, "final", Path(dest) / "warm")  # imports, buffers and the consumer path warmed up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await store.pull(job, "final", Path(dest) / "big")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await client.close()
    print(json.dumps({"before_kib": before, "after_kib": after}))

asyncio.run(main(*sys.argv[2:]))
"""


def pull_memory(url: str, job: str, warm: str, dest: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(REPO), url, job, warm, str(dest)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def drain_chunks(url: str, stream: str, subject: str, total: int) -> None:
    """Receive ``total`` payload bytes of ``subject`` from a push consumer and drop them: the ceiling.

    Speaks just enough of the protocol: CONNECT, one subscription for the deliveries, the consumer
    create request, flow-control replies and PONGs. Nothing is hashed or written.
    """
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    deliver = f"_ceiling.{os.getpid()}"
    config = {
        "stream_name": stream,
        "config": {
            "deliver_subject": deliver,
            "ack_policy": "none",
            "deliver_policy": "all",
            "filter_subject": subject,
            "flow_control": True,
            "idle_heartbeat": 5_000_000_000,
            "mem_storage": True,
            "inactive_threshold": 5_000_000_000,
        },
    }
    body = json.dumps(config).encode()
    sock.sendall(
        b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n'
        + f"SUB {deliver} 1\r\nSUB _ceiling_reply 2\r\n".encode()
        + f"PUB $JS.API.CONSUMER.CREATE.{stream} _ceiling_reply {len(body)}\r\n".encode()
        + body
        + b"\r\n"
    )
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    start = end = got = 0
    try:
        while got < total:
            if len(buf) - end < (1 << 20):  # keep room for a read: move the unparsed tail to the front
                buf[: end - start] = buf[start:end]
                start, end = 0, end - start
            n = sock.recv_into(view[end:])
            if not n:
                raise ConnectionError("nats-server closed the connection")
            end += n
            while (nl := buf.find(b"\r\n", start, end)) >= 0:
                parts = bytes(view[start:nl]).split()
                if parts[0] in (b"MSG", b"HMSG"):
                    size = int(parts[-1])
                    if nl + 2 + size + 2 > end:
                        if nl + 4 + size - start > len(buf):
                            buf.extend(bytes(nl + 4 + size - start))
                            view = memoryview(buf)
                        break
                    hdr = int(parts[-2]) if parts[0] == b"HMSG" else 0
                    has_reply = len(parts) == (6 if parts[0] == b"HMSG" else 5)
                    if parts[2] == b"1":
                        if hdr and bytes(view[nl + 2 : nl + 14]) == b"NATS/1.0 100":
                            if has_reply:  # flow control: tell the server to go on
                                sock.sendall(b"PUB " + parts[3] + b" 0\r\n\r\n")
                        else:
                            got += size - hdr
                    start = nl + 4 + size
                else:
                    if parts and parts[0] == b"PING":
                        sock.sendall(b"PONG\r\n")
                    elif parts and parts[0] == b"-ERR":
                        raise ConnectionError(bytes(view[start:nl]).decode())
                    start = nl + 2
    finally:
        sock.close()


async def run(size: int, rounds: int, work: Path) -> None:
    server = EmbeddedNats(work / "nats").start()
    try:
        client = await Client.connect(NatsSettings(servers=[server.url]))
        store = ArtifactStore.nats(client.topo.artifacts, max_payload=client.nc.max_payload)
        src_dir = work / "final"
        src_dir.mkdir()
        src = src_dir / "model.safetensors"
        make_file(src, size)
        copy_s, put_s, pull_s, drain_s = [], [], [], []
        cpu = {
            "copy": [0.0, 0.0],
            "put": [0.0, 0.0],
            "pull": [0.0, 0.0],
            "drain": [0.0, 0.0],
        }  # [this process, nats-server]

        def account(what: str, before: tuple[float, float]) -> None:
            cpu[what][0] += cpu_seconds() - before[0]
            cpu[what][1] += cpu_seconds(server.proc.pid) - before[1]

        for r in range(rounds):
            dst = work / f"copy-{r}.bin"
            before = (cpu_seconds(), cpu_seconds(server.proc.pid))
            copy_s.append(timed(lambda dst=dst: shutil.copyfile(src, dst)))
            account("copy", before)
            dst.unlink()
            job = f"bench-{r}"
            before = (cpu_seconds(), cpu_seconds(server.proc.pid))
            put_s.append(await atimed(store.put(job, src_dir)))
            account("put", before)
            dest = work / f"pulled-{r}"
            before = (cpu_seconds(), cpu_seconds(server.proc.pid))
            pull_s.append(await atimed(store.pull(job, "final", dest)))
            account("pull", before)
            shutil.rmtree(dest)
            info = await client.topo.artifacts.get_info(f"{job}/final/{src.name}")
            stream, subject = f"OBJ_{store.backend.bucket}", f"$O.{store.backend.bucket}.C.{info.nuid}"
            before = (cpu_seconds(), cpu_seconds(server.proc.pid))
            drain_s.append(timed(lambda s=stream, c=subject: drain_chunks(server.url, s, c, size)))
            account("drain", before)
            await store.delete(job, "final")
        print(f"file {size / MB:,.0f} MB, {rounds} rounds, nats-server {server.url}")
        line, copy = summary("local copy (shutil)", size, copy_s)
        print(line)
        line, put = summary("upload (put, sha256)", size, put_s)
        print(f"{line}   {put / copy:.2f}x copy")
        line, pull = summary("pull (verified)", size, pull_s)
        print(f"{line}   {pull / copy:.2f}x copy   goal >= 0.33x: {'met' if pull / copy >= 1 / 3 else 'NOT met'}")
        line, drain = summary("server ceiling (drain only)", size, drain_s)
        print(f"{line}   {drain / copy:.2f}x copy   (nats-server to a client that hashes and writes nothing)")
        gb = size * rounds / 1e9
        for what, (mine, srv) in cpu.items():
            print(f"CPU per GB, {what:<5}: {mine / gb:5.2f} s this process + {srv / gb:5.2f} s nats-server")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        # memory: the same pull at two sizes, each in a fresh process
        small_dir = work / "small" / "final"
        small_dir.mkdir(parents=True)
        make_file(small_dir / "model.safetensors", 1 << 20)
        await store.put("warm", small_dir)
        small_big = work / "quarter" / "final"
        small_big.mkdir(parents=True)
        make_file(small_big / "model.safetensors", size // 4)
        await store.put("mem-quarter", small_big)
        await store.put("mem-full", src_dir)
        await client.close()
        figures = {}
        for job, nbytes in (("mem-quarter", size // 4), ("mem-full", size)):
            dest = work / f"mem-{job}"
            m = pull_memory(server.url, job, "warm", dest)
            shutil.rmtree(dest)
            figures[job] = m
            grew = (m["after_kib"] - m["before_kib"]) / 1024
            print(
                f"pull peak RSS, {nbytes / MB:6,.0f} MB file: {m['after_kib'] / 1024:6.1f} MiB "
                f"(+{grew:.1f} MiB over the process before the pull)"
            )
        q, f = figures["mem-quarter"]["after_kib"], figures["mem-full"]["after_kib"]
        print(f"peak RSS full / quarter size: {f / q:.2f} (1.00 = does not grow with the file)")
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", help="work directory (default: a temp dir)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="trln-bench-art-", dir=args.dir) as tmp:
        asyncio.run(run(args.size_mb * (1 << 20), args.rounds, Path(tmp)))


if __name__ == "__main__":
    main()
