"""The OpenAI fine-tuning jobs API mounted on OGX 1.x as an external API, from the same code.

OGX serves ``/v1/files`` itself (its Files API takes purpose ``fine-tune``); this module adds
``/v1/fine_tuning/jobs`` (create, list, retrieve, cancel, events, checkpoints: the routes of
:func:`trl_nats_provider.openai.app.job_router`). A job's training and validation files are read
from OGX's Files API when the job is created, checked against the row schema (a file no method can
train is a 400 naming the line and field) and stored content-addressed on NATS for the agents.

OGX reads ``external_apis_dir/fine_tuning.yaml`` (``providers.d/apis``), imports this module and
uses :func:`available_providers`, :class:`FineTuning` and :func:`create_router`; the provider entry
(``remote::trl_nats_openai``) takes the same config as ``remote::trl_nats``. OGX answers for who the
caller is, so every job lives in one namespace, ``ogx``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter

from trl_nats.client import Client
from trl_nats_provider.config import TrlNatsPostTrainingConfig
from trl_nats_provider.host import Api, RemoteProviderSpec, RetrieveFileContentRequest
from trl_nats_provider.openai.app import job_router
from trl_nats_provider.openai.errors import not_found, unavailable
from trl_nats_provider.openai.files import FileRecord, check
from trl_nats_provider.openai.service import Gateway, GatewayConfig

NAMESPACE = "ogx"
ADAPTER_TYPE = "trl_nats_openai"


@runtime_checkable
class FineTuning(Protocol):
    """What the fine_tuning provider gives the routes: the gateway over NATS."""

    async def gateway(self) -> Gateway: ...


def fine_tuning_api() -> Any:
    return Api.add("fine_tuning")


def available_providers() -> list[Any]:
    return [
        RemoteProviderSpec(
            api=fine_tuning_api(),
            adapter_type=ADAPTER_TYPE,
            provider_type=f"remote::{ADAPTER_TYPE}",
            module=__name__,
            config_class="trl_nats_provider.config.TrlNatsPostTrainingConfig",
            pip_packages=["trl-nats-provider[openai]"],
            api_dependencies=[Api.files],
            optional_api_dependencies=[],
            description="The OpenAI fine-tuning jobs API (DPO, supervised) run by trl-nats agents over NATS",
        )
    ]


def create_router(impl: FineTuning) -> APIRouter:
    return job_router(lambda request: impl.gateway(), lambda request: NAMESPACE)


async def get_adapter_impl(config: TrlNatsPostTrainingConfig, deps: dict[Any, Any]) -> OgxFineTuning:
    files = deps.get(Api.files)
    if files is None:
        raise RuntimeError(
            "remote::trl_nats_openai reads training files from OGX's Files API: add files to the run config"
        )
    return OgxFineTuning(config, files)


class OgxFiles:
    """OGX's uploaded files, checked and put on NATS when a job names them (what FileStore.get gives)."""

    def __init__(self, files: Any, client: Client) -> None:
        self.files = files
        self.client = client

    async def get(self, namespace: str, file_id: str, param: str | None = None) -> FileRecord:
        try:
            content = await self.files.openai_retrieve_file_content(RetrieveFileContentRequest(file_id=file_id))
        except Exception as exc:
            if isinstance(exc, ValueError | KeyError | LookupError) or getattr(exc, "status_code", None) in (400, 404):
                raise not_found("file", file_id, param) from None
            raise
        data = getattr(content, "body", content)
        accepted, error = check(data)
        datasets = {kind.value: await self.client.upload_dataset(rows.rows) for kind, rows in accepted.items()}
        return FileRecord(
            id=file_id,
            namespace=namespace,
            filename=file_id,
            bytes=len(data),
            created_at=time.time(),
            purpose="fine-tune",
            status="error" if error else "processed",
            status_details=error,
            datasets=datasets,
            formats={kind.value: rows.format for kind, rows in accepted.items()},
        )


class OgxFineTuning:
    def __init__(self, config: TrlNatsPostTrainingConfig, files: Any) -> None:
        self.config = config
        self.files = files
        self._gateway: Gateway | None = None
        self._connecting = asyncio.Lock()

    async def initialize(self) -> None:
        """NATS may come up after OGX: connect on first use."""

    async def shutdown(self) -> None:
        if self._gateway is not None:
            await self._gateway.client.close()
            self._gateway = None

    async def gateway(self) -> Gateway:
        async with self._connecting:
            if self._gateway is None or self._gateway.client.nc.is_closed:
                wait = max(self.config.connect_timeout * 2, self.config.request_timeout)
                try:
                    client = await asyncio.wait_for(Client.connect(self.config.nats_settings()), wait)
                except (ConnectionError, TimeoutError) as exc:
                    raise unavailable(
                        f"cannot reach NATS at {', '.join(self.config.servers)} ({exc}): start nats-server, or set "
                        "the provider's servers (TRL_NATS_SERVERS) in the run config"
                    ) from None
                c = self.config
                settings = GatewayConfig(
                    nodes=c.nodes,
                    gpus_per_node=c.gpus_per_node,
                    gpu_type=c.gpu_type,
                    max_attempts=c.max_attempts,
                    dpo_lora=c.dpo_lora_params,
                )
                self._gateway = Gateway(client, OgxFiles(self.files, client), settings)
            return self._gateway
