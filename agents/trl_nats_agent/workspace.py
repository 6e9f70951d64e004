"""Where one attempt lives on this node: its work dir, spec file, dataset copies, socket and rank environment.

Layout under the state dir: ``jobs/<job>/attempt-<n>/`` (spec.json, dataset.jsonl,
eval.jsonl, train.log), ``datasets/<sha256>.jsonl`` (the cache every attempt links
from), ``cache/`` (reference log-probs shared by a node's jobs). Event sockets live in
a short temp dir instead: Unix socket paths are limited to 108 bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from nats.aio.msg import Msg

from trl_nats.messages import BadMessage, DatasetRef, JobSpec, encode
from trl_nats_agent.capacity import threads_per_slot
from trl_nats_agent.gang.protocol import GangLaunch
from trl_nats_agent.job import RunningJob
from trl_nats_agent.policy import AgentPolicy
from trl_nats_agent.recipes import contract
from trl_nats_agent.settings import AgentSettings


class Workspace:
    def __init__(self, cfg: AgentSettings, policy: AgentPolicy) -> None:
        self.cfg = cfg
        self.policy = policy
        self.state_dir = cfg.state_dir
        self.sock_dir = Path(tempfile.mkdtemp(prefix="trln-"))

    def close(self) -> None:
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def new_job(
        self,
        spec: JobSpec,
        attempt: int,
        msg: Msg | None,
        gpus: list[int],
        gang: GangLaunch | None = None,
        *,
        run: int = 0,
    ) -> RunningJob:
        return RunningJob(
            spec=spec,
            attempt=attempt,
            msg=msg,
            gpus=gpus,
            workdir=self.state_dir / "jobs" / spec.job_id / f"attempt-{attempt}",
            output_dir=self.policy.output_dir(spec),
            run=run,
            gang=gang,
        )

    def write_spec(self, job: RunningJob) -> Path:
        job.workdir.mkdir(parents=True, exist_ok=True)
        job.output_dir.mkdir(parents=True, exist_ok=True)
        path = job.workdir / "spec.json"
        path.write_bytes(encode(job.spec))
        return path

    def socket_path(self, job: RunningJob) -> Path:
        digest = hashlib.sha256(f"{job.spec.job_id}.{job.attempt}".encode()).hexdigest()[:16]
        return self.sock_dir / f"{digest}.sock"

    async def dataset(self, datasets_store, ref: DatasetRef, dest: Path) -> Path:
        """The dataset at ``dest``: linked from the node's cache, fetched into it (and checked) once."""
        cache = self.state_dir / "datasets" / f"{ref.sha256}.jsonl"
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{uuid.uuid4().hex}.part")
            with open(tmp, "wb") as f:
                await datasets_store.get(ref.object, writeinto=f)
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
            if digest != ref.sha256:
                tmp.unlink(missing_ok=True)
                raise BadMessage(f"dataset {ref.object} has sha256 {digest}, expected {ref.sha256}")
            os.replace(tmp, cache)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        os.link(cache, dest) if _same_fs(cache, dest) else shutil.copyfile(cache, dest)
        return dest

    def rank_env(self, job: RunningJob, base: dict[str, str] | None = None) -> dict[str, str]:
        return rank_env(
            dict(os.environ) if base is None else base,
            cfg=self.cfg,
            job_id=job.spec.job_id,
            attempt=job.attempt,
            gpus=job.gpus,
            events_socket=self.socket_path(job) if job.owns_record else None,
            ifname=job.gang.ifname if job.gang is not None else None,
        )


def rank_env(
    base: dict[str, str],
    *,
    cfg: AgentSettings,
    job_id: str,
    attempt: int,
    gpus: list[int],
    events_socket: Path | None,
    ifname: str | None,
) -> dict[str, str]:
    """The environment of every rank of one attempt on this node (names from recipes/contract.py)."""
    env = dict(base)
    env[contract.DEVICE_ENV] = cfg.device
    if events_socket is not None:  # rank 0 runs here; a gang member's ranks have nothing to report
        env[contract.EVENTS_SOCKET_ENV] = str(events_socket)
    env[contract.JOB_ID_ENV] = job_id
    env[contract.ATTEMPT_ENV] = str(attempt)
    env[contract.CACHE_DIR_ENV] = str(cfg.state_dir / "cache")  # reference log-probs shared across attempts
    env["PYTHONUNBUFFERED"] = "1"
    # every torch.load in the ranks (optimizer, scheduler, RNG state of a fetched checkpoint) refuses pickled code
    env["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    env[contract.ALLOW_REMOTE_CODE_ENV] = "1" if cfg.allow_remote_code else "0"
    if cfg.offline:
        for name in contract.HUB_OFFLINE_ENVS:
            env[name] = "1"
    if ifname:
        # the collectives must use the interface the other nodes reach us on (see network.py)
        env.setdefault("GLOO_SOCKET_IFNAME", ifname)
        env.setdefault("NCCL_SOCKET_IFNAME", ifname)
    if cfg.device == "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", str(threads_per_slot(len(cfg.gpus))))
    return env


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b.parent).st_dev
    except OSError:
        return False
