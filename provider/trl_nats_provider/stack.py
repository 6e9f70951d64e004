"""A Llama Stack run config with this provider, and a ``llama stack run`` process to serve it.

:func:`run_config` builds the run config: datasetio ``inline::localfs`` and
``remote::trl_nats``, sqlite storage under one directory, loopback only.
The shipped ``run.yaml`` beside this file is ``run_config()`` with its
defaults (every value overridable by environment variables); the demo and
the tests write their own copy with concrete ports and paths.

:class:`LlamaStackServer` runs ``llama stack run CONFIG --port N`` as a child
process and waits until ``/v1/health`` answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

import yaml

from trl_nats_provider.config import TrlNatsPostTrainingConfig
from trl_nats_provider.provider import MODULE, PROVIDER_TYPE

DEFAULT_STACK_DIR = "${env.TRL_NATS_STACK_DIR:=~/.llama/distributions/trl-nats}"
DEFAULT_PORT = 8321
SHIPPED_RUN_CONFIG = Path(__file__).with_name("run.yaml")
DATASETIO_PROVIDER_ID = "localfs"
POST_TRAINING_PROVIDER_ID = "trl_nats"
FILES_PROVIDER_ID = "localfs-files"


HOSTS = ("llama-stack-0.6", "llama-stack-0.7", "ogx")
# the run config shipped beside this file for each host
SHIPPED_RUN_CONFIGS = {
    "llama-stack-0.6": SHIPPED_RUN_CONFIG,
    "llama-stack-0.7": Path(__file__).with_name("run-llama-stack-0.7.yaml"),
    "ogx": Path(__file__).with_name("run-ogx.yaml"),
}
DEFAULT_EXTERNAL_APIS_DIR = "${env.TRL_NATS_EXTERNAL_APIS_DIR:=providers.d/apis}"


def run_config(
    *,
    stack_dir: str | os.PathLike[str] = DEFAULT_STACK_DIR,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    provider_config: dict[str, Any] | None = None,
    declare: Literal["module", "providers_dir"] = "module",
    providers_dir: str | os.PathLike[str] | None = None,
    stack: str = "llama-stack-0.6",
    external_apis_dir: str | os.PathLike[str] = DEFAULT_EXTERNAL_APIS_DIR,
    tls: bool | None = None,
) -> dict[str, Any]:
    """The run config of ``stack`` (one of :data:`HOSTS`) as a dict.

    On 0.6.1 ``declare="module"`` names the provider's module on its entry
    (Llama Stack imports ``trl_nats_provider.provider``); ``"providers_dir"``
    finds it through ``external_providers_dir`` (``providers.d/`` in this repo).
    On 0.7.x and OGX post_training is an external API found in
    ``external_apis_dir`` (``providers.d/apis``), whose module lists the provider.
    Every host gets a files provider, so rows can be uploaded; 0.6.1 and 0.7.x
    also datasetio. ``tls`` (default: on for OGX) reads the certificate and
    key paths from TRL_NATS_STACK_TLS_CERT / TRL_NATS_STACK_TLS_KEY.
    """
    if stack not in HOSTS:
        raise ValueError(f"stack must be one of {', '.join(HOSTS)}, not {stack!r}")
    stack_dir = str(stack_dir)
    provider: dict[str, Any] = {
        "provider_id": POST_TRAINING_PROVIDER_ID,
        "provider_type": PROVIDER_TYPE,
        "config": provider_config if provider_config is not None else TrlNatsPostTrainingConfig.sample_run_config(),
    }
    files = {
        "provider_id": FILES_PROVIDER_ID,
        "provider_type": "inline::localfs",
        "config": {
            "storage_dir": f"{stack_dir}/files",
            "metadata_store": {"table_name": "files_metadata", "backend": "sql_default"},
        },
    }
    providers: dict[str, Any] = {"post_training": [provider], "files": [files]}
    apis = ["post_training", "files"]
    if stack != "ogx":  # OGX has no datasetio/datasets
        apis.insert(0, "datasetio")
        providers["datasetio"] = [
            {
                "provider_id": DATASETIO_PROVIDER_ID,
                "provider_type": "inline::localfs",
                "config": {"kvstore": {"namespace": "datasetio::localfs", "backend": "kv_default"}},
            }
        ]
    stores: dict[str, Any] = {
        "metadata": {"namespace": "registry", "backend": "kv_default"},
        "inference": {"table_name": "inference_store", "backend": "sql_default"},
        "conversations": {"table_name": "openai_conversations", "backend": "sql_default"},
        "prompts": {"namespace": "prompts", "backend": "kv_default"},
    }
    if stack == "llama-stack-0.7":
        stores["connectors"] = {"namespace": "connectors", "backend": "kv_default"}
    elif stack == "ogx":
        stores["connectors"] = {"table_name": "connectors", "backend": "sql_default"}
    config: dict[str, Any] = {
        "version": 2,
        "distro_name": "trl-nats",
        "apis": apis,
        "providers": providers,
        "storage": {
            "backends": {
                "kv_default": {"type": "kv_sqlite", "db_path": f"{stack_dir}/kvstore.db"},
                "sql_default": {"type": "sql_sqlite", "db_path": f"{stack_dir}/sql_store.db"},
            },
            "stores": stores,
        },
        "registered_resources": {"models": [], "datasets": []} if stack != "ogx" else {"models": []},
        "server": {"host": host, "port": port},
    }
    if tls if tls is not None else stack == "ogx":
        config["server"]["tls_certfile"] = "${env.TRL_NATS_STACK_TLS_CERT:=}"
        config["server"]["tls_keyfile"] = "${env.TRL_NATS_STACK_TLS_KEY:=}"
    if stack != "llama-stack-0.6":
        config["external_apis_dir"] = str(external_apis_dir)
        return config
    if declare == "module":
        provider["module"] = MODULE
    elif declare == "providers_dir":
        if providers_dir is None:
            raise ValueError(
                "declare='providers_dir' needs providers_dir (the folder that holds remote/post_training/)"
            )
        config["external_providers_dir"] = str(providers_dir)
    else:
        raise ValueError(f"declare must be 'module' or 'providers_dir', not {declare!r}")
    return config


RUN_COMMANDS = {
    "llama-stack-0.6": "llama stack run <this file> --port 8321",
    "llama-stack-0.7": "llama stack run <this file> --port 8321 (from the repo root, or set TRL_NATS_EXTERNAL_APIS_DIR)",
    "ogx": "ogx run <this file> --port 8321 with TRL_NATS_STACK_TLS_CERT/KEY set (--insecure: loopback trials only)",
}


def dump_run_config(config: dict[str, Any], stack: str = "llama-stack-0.6") -> str:
    what = "post_training remote::trl_nats" + (
        " (native)" if stack == "llama-stack-0.6" else " (an external API, providers.d/apis)"
    )
    header = (
        f"# {stack} run config: {what} + files{' + datasetio' if stack != 'ogx' else ''} (inline::localfs).\n"
        "# Generated by trl_nats_provider.stack.run_config(); TRL_NATS_* variables override the\n"
        "# provider settings, TRL_NATS_STACK_DIR the sqlite state.\n"
        f"# Run: {RUN_COMMANDS[stack]}\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def write_run_config(path: str | os.PathLike[str], **kwargs: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_run_config(run_config(**kwargs), kwargs.get("stack", "llama-stack-0.6")))
    return path


def llama_command() -> list[str]:
    """The ``llama`` CLI of this environment (beside this interpreter), else the module."""
    here = Path(sys.executable).parent / "llama"
    if here.exists():
        return [str(here)]
    found = shutil.which("llama")
    if found:
        return [found]
    return [sys.executable, "-m", "llama_stack.cli.llama"]


def stack_command(stack: str, bin_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The CLI that serves ``stack``: ``llama stack run`` (Llama Stack) or ``ogx run`` (OGX).

    ``bin_dir`` is the bin/ of the venv that has that host (each host needs its own venv).
    """
    if bin_dir is None:
        return [*llama_command(), "stack", "run"] if stack != "ogx" else [shutil.which("ogx") or "ogx", "run"]
    tool = Path(bin_dir) / ("ogx" if stack == "ogx" else "llama")
    if not tool.exists():
        raise LlamaStackError(f"{tool} is missing: make the {stack} venv with scripts/setup-stack.sh {stack}")
    return [str(tool), "run"] if stack == "ogx" else [str(tool), "stack", "run"]


class LlamaStackError(RuntimeError):
    pass


class LlamaStackServer:
    """``llama stack run`` / ``ogx run`` in a child process (its own session, so Ctrl-C reaches only us)."""

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        *,
        port: int,
        log_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        stack: str = "llama-stack-0.6",
        bin_dir: str | os.PathLike[str] | None = None,
        insecure: bool = False,
    ) -> None:
        self.stack = stack
        self.bin_dir = bin_dir
        self.insecure = insecure
        self.config_path = Path(config_path)
        self.port = port
        self.host = host
        self.log_path = Path(log_path)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 180.0) -> LlamaStackServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.stack == "ogx":
            # ogx moves ~/.llama to ~/.ogx on start unless it has a config dir of its own
            env.setdefault("OGX_CONFIG_DIR", str(self.log_path.parent / "ogx-config"))
        cmd = [*stack_command(self.stack, self.bin_dir), str(self.config_path), "--port", str(self.port)]
        if self.insecure:
            cmd.append("--insecure")
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise LlamaStackError(f"{' '.join(cmd[:3])} exited with {code} before serving: {self.tail()}")
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise LlamaStackError(
            f"llama stack run did not answer {self.url}/v1/health within {timeout:.0f}s: {self.tail()}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v1/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"last lines of {self.log_path}:\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGINT is what uvicorn treats as a graceful stop; the group takes any helpers along
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self, timeout: float = 180.0) -> LlamaStackServer:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> LlamaStackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
