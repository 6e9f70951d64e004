"""The provider's configuration: how to reach NATS, and the defaults jobs get.

Llama Stack builds :class:`TrlNatsPostTrainingConfig` from the provider's
``config:`` block in the run config (after ``${env.VAR:=default}``
substitution, which turns empty strings into ``None``). Every field has a
default that suits the embedded stack: a nats-server on loopback, one CPU
or GPU agent, outputs in the agent's own directory.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, Field, field_validator

from trl_nats.messages import LoraParams
from trl_nats.settings import NatsSettings
from trl_nats.subjects import DEFAULT_PREFIX, Names
from trl_nats_provider import dpo_lora

DEFAULT_SERVERS = "nats://127.0.0.1:4222"


class TrlNatsPostTrainingConfig(BaseModel):
    """Configuration of ``remote::trl_nats``."""

    servers: list[str] = Field(
        default_factory=lambda: [DEFAULT_SERVERS],
        description="NATS server URLs (a list, or one comma-separated string as env substitution gives)",
    )
    prefix: str = Field(default=DEFAULT_PREFIX, description="Subject prefix shared with the agents")
    user: str | None = Field(default=None, description="NATS user (with password)")
    password: str | None = Field(default=None, description="NATS password")
    token: str | None = Field(default=None, description="NATS token")
    nkey_seed: str | None = Field(default=None, description="Path to an nkey seed file")
    creds_file: str | None = Field(default=None, description="Path to a NATS .creds file (JWT + seed)")
    tls_ca: str | None = Field(default=None, description="CA bundle that signed the NATS server's certificate")
    tls_cert: str | None = Field(default=None, description="Client certificate for mutual TLS")
    tls_key: str | None = Field(default=None, description="Key of the client certificate")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for the first NATS connection")
    request_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for each JetStream / KV / object store request"
    )
    nodes: int = Field(default=1, ge=1, le=64, description="Nodes each job asks for")
    gpus_per_node: int = Field(
        default=1, ge=1, le=64, description="GPUs per node each job asks for (process slots on CPU agents)"
    )
    gpu_type: str | None = Field(default=None, description="GPU type jobs need, e.g. H100; unset fits any")
    output_dir: str | None = Field(
        default=None,
        description="Where agents write checkpoints (a path on the agent's node; the job id is appended). "
        "Unset: each agent's own outputs directory. supervised_fine_tune's checkpoint_dir wins over it.",
    )
    default_model: str | None = Field(
        default=None, description="Model supervised_fine_tune trains when the request names none"
    )
    max_attempts: int = Field(default=3, ge=1, le=100, description="How often a job is retried after agent loss")
    max_rows: int = Field(
        default=1_000_000, ge=1, description="Largest dataset (rows) a request may send through Llama Stack"
    )
    dpo_lora: dict[str, Any] | None = Field(
        default=None,
        description="Train every DPO job as LoRA (the API has no LoRA field for DPO): true for the default "
        'adapter, or a JSON object of LoRA fields, e.g. {"rank": 16, "alpha": 32}; unset or false: full DPO',
    )

    @field_validator("servers", mode="before")
    @classmethod
    def _split_servers(cls, value: Any) -> Any:
        if value is None:
            return [DEFAULT_SERVERS]
        if isinstance(value, str):
            servers = [s.strip() for s in value.split(",") if s.strip()]
            return servers or [DEFAULT_SERVERS]
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        Names(value)  # raises ValueError with a sentence on a bad prefix
        return value

    @field_validator(
        "user",
        "password",
        "token",
        "nkey_seed",
        "creds_file",
        "tls_ca",
        "tls_cert",
        "tls_key",
        "gpu_type",
        "output_dir",
        "default_model",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("dpo_lora", mode="before")
    @classmethod
    def _read_dpo_lora(cls, value: Any) -> Any:
        lora = dpo_lora.parse(value)  # DpoLoraSettingError is a ValueError: pydantic reports its sentence
        return None if lora is None else msgspec.to_builtins(lora)

    @property
    def dpo_lora_params(self) -> LoraParams | None:
        return dpo_lora.parse(self.dpo_lora)

    def nats_settings(self) -> NatsSettings:
        return NatsSettings(
            servers=list(self.servers),
            prefix=self.prefix,
            user=self.user,
            password=self.password,
            token=self.token,
            nkey_seed=self.nkey_seed,
            creds_file=self.creds_file,
            tls_ca=self.tls_ca,
            tls_cert=self.tls_cert,
            tls_key=self.tls_key,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            name="llama-stack-trl-nats",
        )

    @classmethod
    def sample_run_config(cls, **kwargs: Any) -> dict[str, Any]:
        """The provider's ``config:`` block, every setting overridable by a TRL_NATS_* variable."""
        return {
            "servers": "${env.TRL_NATS_SERVERS:=" + DEFAULT_SERVERS + "}",
            "prefix": "${env.TRL_NATS_PREFIX:=" + DEFAULT_PREFIX + "}",
            "user": "${env.TRL_NATS_USER:=}",
            "password": "${env.TRL_NATS_PASSWORD:=}",
            "token": "${env.TRL_NATS_TOKEN:=}",
            "nkey_seed": "${env.TRL_NATS_NKEY_SEED:=}",
            "creds_file": "${env.TRL_NATS_CREDS_FILE:=}",
            "tls_ca": "${env.TRL_NATS_TLS_CA:=}",
            "tls_cert": "${env.TRL_NATS_TLS_CERT:=}",
            "tls_key": "${env.TRL_NATS_TLS_KEY:=}",
            "gpus_per_node": "${env.TRL_NATS_GPUS_PER_NODE:=1}",
            "gpu_type": "${env.TRL_NATS_GPU_TYPE:=}",
            "output_dir": "${env.TRL_NATS_OUTPUT_DIR:=}",
            "default_model": "${env.TRL_NATS_DEFAULT_MODEL:=}",
            "dpo_lora": "${env." + dpo_lora.ENV + ":=}",
        }
