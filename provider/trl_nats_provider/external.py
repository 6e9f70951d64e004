"""The ``post_training`` API for Llama Stack 0.7.x and OGX, which load it as an external API.

Both servers read ``external_apis_dir/*.yaml`` (``providers.d/apis/post_training.yaml``
here), import this module and use its three exports:

- :func:`available_providers` — the provider specs of the API (``remote::trl_nats``);
- :class:`PostTraining` — the Protocol the stack checks the provider against;
- :func:`create_router` — a FastAPI router with 0.6.1's six routes under
  ``/v1alpha/post-training``.

The router answers the way 0.6.1 does: the same request and response JSON
(:mod:`trl_nats_provider.api_models`), 400 for a malformed request with the
same ``{"error": {"message": "{'errors': [{'loc': ..., 'msg': ..., 'type': ...}]}"}}``
body, and the provider's own errors with their status (400 naming the field,
404, 409, 503) and message. It handles them itself, so the answer does not
depend on how each server version maps exceptions.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from trl_nats_provider import api_models as m
from trl_nats_provider.host import Api, RemoteProviderSpec, post_training_api
from trl_nats_provider.provider import ADAPTER_TYPE, CONFIG_CLASS, DESCRIPTION, MODULE, PIP_PACKAGES, PROVIDER_TYPE

log = logging.getLogger(__name__)

PREFIX = "/v1alpha/post-training"


@runtime_checkable
class PostTraining(Protocol):
    """What a post_training provider implements (0.6.1's methods, 0.6.1's request types)."""

    async def preference_optimize(self, request: m.PreferenceOptimizeRequest) -> m.PostTrainingJob: ...

    async def supervised_fine_tune(self, request: m.SupervisedFineTuneRequest) -> m.PostTrainingJob: ...

    async def get_training_jobs(self) -> m.ListPostTrainingJobsResponse: ...

    async def get_training_job_status(
        self, request: m.GetTrainingJobStatusRequest
    ) -> m.PostTrainingJobStatusResponse: ...

    async def cancel_training_job(self, request: m.CancelTrainingJobRequest) -> None: ...

    async def get_training_job_artifacts(
        self, request: m.GetTrainingJobArtifactsRequest
    ) -> m.PostTrainingJobArtifactsResponse: ...


def _optional_apis() -> list[Any]:
    """files on every host; datasetio and datasets where the host still has them (0.7.x, not OGX)."""
    names = ("files", "datasetio", "datasets")
    return [getattr(Api, n) for n in names if hasattr(Api, n)]


def available_providers() -> list[Any]:
    return [
        RemoteProviderSpec(
            api=post_training_api(),
            adapter_type=ADAPTER_TYPE,
            provider_type=PROVIDER_TYPE,
            module=MODULE,
            config_class=CONFIG_CLASS,
            pip_packages=PIP_PACKAGES,
            api_dependencies=[],
            optional_api_dependencies=_optional_apis(),
            description=DESCRIPTION,
        )
    ]


def error_response(status: int, message: str) -> JSONResponse:
    """The error body Llama Stack 0.6.1 sends (OpenAI's form)."""
    return JSONResponse(status_code=status, content={"error": {"message": message}})


def _validation_message(exc: ValidationError, where: str) -> str:
    # 0.6.1 answers a RequestValidationError with str({"errors": [...]}) as the message; the same here
    errors = [
        {"loc": [where, *e.get("loc", ())], "msg": e.get("msg", "Validation error"), "type": e.get("type", "unknown")}
        for e in exc.errors()
    ]
    return str({"errors": errors})


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


async def _answer(call) -> Any:
    try:
        result = await call()
    except Exception as exc:
        status = _status_of(exc)
        if status is None and isinstance(exc, ValueError):
            status = 400
        if status is None:
            log.exception("post_training request failed")
            return error_response(500, "Internal server error: An unexpected error occurred.")
        return error_response(status, str(exc))
    if result is None:
        return None
    return JSONResponse(content=json.loads(result.model_dump_json()))


async def _body(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        return error_response(400, f"the request body is not JSON ({exc}): send a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return error_response(400, _validation_message(exc, "body"))


def create_router(impl: PostTraining) -> APIRouter:
    """The six routes of 0.6.1 (no side effects: the servers call this more than once)."""
    router = APIRouter(tags=["Post Training"])

    @router.post(f"{PREFIX}/preference-optimize", response_model=m.PostTrainingJob)
    async def preference_optimize(request: Request) -> Any:
        body = await _body(request, m.PreferenceOptimizeRequest)
        if isinstance(body, JSONResponse):
            return body
        return await _answer(lambda: impl.preference_optimize(body))

    @router.post(f"{PREFIX}/supervised-fine-tune", response_model=m.PostTrainingJob)
    async def supervised_fine_tune(request: Request) -> Any:
        body = await _body(request, m.SupervisedFineTuneRequest)
        if isinstance(body, JSONResponse):
            return body
        return await _answer(lambda: impl.supervised_fine_tune(body))

    @router.get(f"{PREFIX}/jobs", response_model=m.ListPostTrainingJobsResponse)
    async def get_training_jobs() -> Any:
        return await _answer(impl.get_training_jobs)

    @router.get(f"{PREFIX}/jobs/{{job_uuid}}/status", response_model=m.PostTrainingJobStatusResponse)
    async def get_training_job_status(job_uuid: str) -> Any:
        return await _answer(lambda: impl.get_training_job_status(m.GetTrainingJobStatusRequest(job_uuid=job_uuid)))

    @router.post(f"{PREFIX}/jobs/{{job_uuid}}/cancel")
    async def cancel_training_job(job_uuid: str) -> Any:
        return await _answer(lambda: impl.cancel_training_job(m.CancelTrainingJobRequest(job_uuid=job_uuid)))

    @router.get(f"{PREFIX}/jobs/{{job_uuid}}/artifacts", response_model=m.PostTrainingJobArtifactsResponse)
    async def get_training_job_artifacts(job_uuid: str) -> Any:
        return await _answer(
            lambda: impl.get_training_job_artifacts(m.GetTrainingJobArtifactsRequest(job_uuid=job_uuid))
        )

    return router
