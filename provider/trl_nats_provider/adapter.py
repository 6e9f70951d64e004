"""The ``post_training`` implementation: six methods, all state in NATS, the same on every host.

Llama Stack 0.6.1 calls it as its native post_training provider; 0.7.x and
OGX through the external API's router (:mod:`trl_nats_provider.external`).
Rows come from a registered dataset (``datasetio.iterrows``, where the host
has datasets) or from a file uploaded to the stack's Files API: a
``dataset_id`` that names an uploaded file (``file-...``) is read as JSON lines.

No job table lives in this process: every answer is read from the jobs KV
bucket through :class:`trl_nats.client.Client`, so a restarted Llama Stack
(or a second one behind a load balancer) sees every job, including jobs
submitted with the ``trl-nats`` CLI.

The NATS connection is made on first use, on the event loop that serves
requests, and nats-py keeps it alive across broker restarts from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from trl_nats.client import Client, JobAlreadyFinished
from trl_nats.messages import DatasetRef, JobKind, JobRecord
from trl_nats.store import JobNotFound
from trl_nats_provider import dpo_lora, mapping, rows
from trl_nats_provider.config import TrlNatsPostTrainingConfig
from trl_nats_provider.errors import (
    InvalidTrainingRequest,
    JobUuidInUse,
    NatsUnavailable,
    TrainingJobFinished,
    TrainingJobNotFound,
)
from trl_nats_provider.host import HOST, IterRowsRequest, RetrieveFileContentRequest, models

# the host's own request/response types on 0.6.1, trl_nats_provider.api_models elsewhere
CancelTrainingJobRequest = models.CancelTrainingJobRequest
GetTrainingJobArtifactsRequest = models.GetTrainingJobArtifactsRequest
GetTrainingJobStatusRequest = models.GetTrainingJobStatusRequest
ListPostTrainingJobsResponse = models.ListPostTrainingJobsResponse
PostTrainingJob = models.PostTrainingJob
PostTrainingJobArtifactsResponse = models.PostTrainingJobArtifactsResponse
PostTrainingJobStatusResponse = models.PostTrainingJobStatusResponse
PreferenceOptimizeRequest = models.PreferenceOptimizeRequest
SupervisedFineTuneRequest = models.SupervisedFineTuneRequest

log = logging.getLogger(__name__)

# ids the Files API gives uploads (OpenAI's form); other ids name registered datasets
FILE_ID_PREFIX = "file-"

RowCheck = Callable[[list[dict[str, Any]], str], list[dict[str, Any]]]


class TrlNatsPostTrainingAdapter:
    def __init__(
        self, config: TrlNatsPostTrainingConfig, datasetio: Any = None, datasets: Any = None, files: Any = None
    ) -> None:
        self.config = config
        self.datasetio = datasetio
        self.datasets = datasets
        self.files = files
        self._client: Client | None = None
        self._connecting = asyncio.Lock()

    async def initialize(self) -> None:
        """Nothing to do at start: NATS may come up after Llama Stack, so connect on first use."""

    async def shutdown(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def client(self) -> Client:
        if self._client is not None and not self._client.nc.is_closed:
            return self._client
        async with self._connecting:
            if self._client is None or self._client.nc.is_closed:
                # nats-py retries a first connect forever when reconnects are unlimited: bound it
                wait = max(self.config.connect_timeout * 2, self.config.request_timeout)
                try:
                    self._client = await asyncio.wait_for(
                        Client.connect(self.config.nats_settings(), name="llama-stack-trl-nats"), wait
                    )
                except (ConnectionError, TimeoutError) as exc:
                    raise NatsUnavailable(
                        f"remote::trl_nats cannot reach NATS at {', '.join(self.config.servers)} "
                        f"({exc or f'no connection within {wait:.0f}s'}): start nats-server, or set the provider's "
                        "servers (TRL_NATS_SERVERS) and credentials in the run config"
                    ) from None
            return self._client

    # -- submitting ------------------------------------------------------------
    async def preference_optimize(self, request: PreferenceOptimizeRequest) -> PostTrainingJob:
        mapping.job_id(request.job_uuid)
        mapping.check_extras(request.hyperparam_search_config)
        params = mapping.dpo_params(request.algorithm_config, request.training_config)
        params = dpo_lora.apply(JobKind.dpo, params, self.config.dpo_lora_params)
        return await self._submit(
            request.job_uuid,
            JobKind.dpo,
            model=request.finetuned_model,
            training_config=request.training_config,
            params=params,
            check_rows=rows.preference_rows,
            output_dir=None,
        )

    async def supervised_fine_tune(self, request: SupervisedFineTuneRequest) -> PostTrainingJob:
        mapping.job_id(request.job_uuid)
        mapping.check_extras(request.hyperparam_search_config)
        params = mapping.sft_params(request.training_config, request.algorithm_config)
        model = request.model or self.config.default_model
        if not model:
            raise InvalidTrainingRequest(
                "model is required: name the model to fine-tune in the request, "
                "or set default_model in the remote::trl_nats provider config"
            )
        return await self._submit(
            request.job_uuid,
            JobKind.sft,
            model=model,
            training_config=request.training_config,
            params=params,
            check_rows=rows.sft_rows,
            output_dir=request.checkpoint_dir or None,
            labels={"algorithm": "lora" if params.lora else "full"},
        )

    async def _submit(
        self,
        job_uuid: str,
        kind: JobKind,
        *,
        model: str,
        training_config: Any,
        params: Any,
        check_rows: RowCheck,
        output_dir: str | None,
        labels: dict[str, str] | None = None,
    ) -> PostTrainingJob:
        dataset_id, eval_id = mapping.dataset_ids(training_config)
        train_rows = await self._rows(dataset_id, kind, check_rows)
        eval_rows = await self._rows(eval_id, kind, check_rows) if eval_id else None
        res = mapping.resources(self.config)
        params = mapping.cap_steps(params, training_config, len(train_rows), res)
        client = await self.client()
        train_ref = await client.upload_dataset(train_rows)
        eval_ref: DatasetRef | None = await client.upload_dataset(eval_rows) if eval_rows else None
        spec = mapping.job_spec(
            kind=kind,
            job_uuid=job_uuid,
            model=model,
            dataset=train_ref,
            eval_dataset=eval_ref,
            params=params,
            config=self.config,
            output_dir=output_dir,
            labels={
                "dataset_id": dataset_id,
                **({"validation_dataset_id": eval_id} if eval_id else {}),
                **(labels or {}),
            },
        )
        existing = await self._existing(client, spec.job_id)
        if existing is not None:
            differences = mapping.spec_differences(existing.spec, spec)
            if differences:
                raise JobUuidInUse(spec.job_id, differences)
            log.info("job %s exists already (%s): not starting another", spec.job_id, existing.state.value)
            return PostTrainingJob(job_uuid=spec.job_id)
        await client.submit(spec)
        log.info("queued %s job %s (%d rows) on pool %s", kind.value, spec.job_id, len(train_rows), res.pool)
        return PostTrainingJob(job_uuid=spec.job_id)

    async def _existing(self, client: Client, job_id: str) -> JobRecord | None:
        try:
            return await client.job(job_id).status()
        except JobNotFound:
            return None

    async def _rows(self, dataset_id: str, kind: JobKind, check_rows: RowCheck) -> list[dict[str, Any]]:
        """The checked rows of an uploaded file (JSON lines) or a registered dataset."""
        if self.files is not None and dataset_id.startswith(FILE_ID_PREFIX):
            out = rows.file_rows(await self._read_file(dataset_id), dataset_id, kind)
            if len(out) > self.config.max_rows:
                raise InvalidTrainingRequest(
                    f"file {dataset_id!r} has more than {self.config.max_rows} rows, the provider's max_rows: "
                    "raise max_rows in the provider config or submit it with the trl-nats CLI"
                )
            return out
        if self.datasetio is None:
            upload = (
                "upload the rows as JSON lines with POST /v1/files (files.create) and pass the file id"
                if self.files is not None
                else "add a files provider (inline::localfs) to the run config, upload the rows and pass the file id"
            )
            raise InvalidTrainingRequest(
                f"training_config.data_config.dataset_id {dataset_id!r} is not a file id ({FILE_ID_PREFIX}...), and "
                f"this stack ({HOST}) has no datasets API to read it from: {upload}"
            )
        return check_rows(await self._read_dataset(dataset_id), dataset_id)

    async def _read_file(self, file_id: str) -> bytes:
        """An uploaded file's content, from the stack's Files API."""
        try:
            content = await self.files.openai_retrieve_file_content(RetrieveFileContentRequest(file_id=file_id))
        except Exception as exc:
            if isinstance(exc, ValueError | KeyError | LookupError) or getattr(exc, "status_code", None) in (400, 404):
                datasets = " or the id of a registered dataset" if self.datasetio is not None else ""
                raise InvalidTrainingRequest(
                    f"training_config.data_config.dataset_id {file_id!r} is not an uploaded file ({exc}): upload "
                    f"the rows as JSON lines with POST /v1/files (files.create) and pass the file id{datasets}"
                ) from None
            raise
        return getattr(content, "body", content)

    async def _read_dataset(self, dataset_id: str) -> list[dict[str, Any]]:
        """All rows of a registered dataset, page by page when its provider pages."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                page = await self.datasetio.iterrows(
                    IterRowsRequest(dataset_id=dataset_id, start_index=len(out) or None, limit=-1)
                )
            except InvalidTrainingRequest:
                raise
            except (ValueError, KeyError, LookupError) as exc:
                raise InvalidTrainingRequest(
                    f"dataset {dataset_id!r} cannot be read ({exc}): register it first with "
                    "client.beta.datasets.register(dataset_id=..., purpose='post-training/messages', source=...)"
                ) from None
            except Exception as exc:
                if getattr(exc, "status_code", None) == 404:
                    raise InvalidTrainingRequest(
                        f"dataset {dataset_id!r} is not registered ({exc}): register it first with "
                        "client.beta.datasets.register(...)"
                    ) from None
                raise
            out.extend(page.data)
            if len(out) > self.config.max_rows:
                raise InvalidTrainingRequest(
                    f"dataset {dataset_id!r} has more than {self.config.max_rows} rows, the provider's max_rows: "
                    "raise max_rows in the provider config or submit it with the trl-nats CLI"
                )
            if not page.has_more or not page.data:
                return out

    # -- reading and cancelling --------------------------------------------------
    async def _record(self, job_uuid: str) -> JobRecord:
        try:
            mapping.job_id(job_uuid)
        except InvalidTrainingRequest:
            raise TrainingJobNotFound(job_uuid) from None
        client = await self.client()
        try:
            return await client.job(job_uuid).status()
        except JobNotFound:
            raise TrainingJobNotFound(job_uuid) from None

    async def get_training_jobs(self) -> ListPostTrainingJobsResponse:
        client = await self.client()
        records = await client.list_jobs()
        return ListPostTrainingJobsResponse(data=[PostTrainingJob(job_uuid=r.job_id) for r in records])

    async def get_training_job_status(self, request: GetTrainingJobStatusRequest) -> PostTrainingJobStatusResponse:
        return mapping.status_response(await self._record(request.job_uuid))

    async def get_training_job_artifacts(
        self, request: GetTrainingJobArtifactsRequest
    ) -> PostTrainingJobArtifactsResponse:
        return mapping.artifacts_response(await self._record(request.job_uuid))

    async def cancel_training_job(self, request: CancelTrainingJobRequest) -> None:
        record = await self._record(request.job_uuid)
        client = await self.client()
        try:
            await client.cancel(record.job_id, reason="cancelled through Llama Stack")
        except JobAlreadyFinished as exc:
            raise TrainingJobFinished(record.job_id, exc.record.state.value) from None
        except JobNotFound:
            raise TrainingJobNotFound(record.job_id) from None
