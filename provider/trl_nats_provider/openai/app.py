"""The HTTP routes of the OpenAI fine-tuning API (Starlette through FastAPI), and its error answers.

Bodies and query strings are read by hand and checked by :mod:`.requests` and :mod:`.objects`, so
every refusal is OpenAI's error shape with a message written for the caller; an exception nobody
expected is logged and answered 500 in the same shape, and never takes the service down.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from nats.errors import Error as NatsError
from starlette.exceptions import HTTPException

from trl_nats.client import Client
from trl_nats.settings import NatsSettings
from trl_nats_provider.openai import objects
from trl_nats_provider.openai.errors import APIError, bad_request, too_large
from trl_nats_provider.openai.files import FileStore
from trl_nats_provider.openai.keys import KeyRing
from trl_nats_provider.openai.requests import parse_job_request
from trl_nats_provider.openai.service import Gateway, GatewayConfig, nats_unavailable

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 1 << 20
# nats-py's own errors (reconnecting, no responders, timeouts, JetStream unavailable) and the builtins it raises
NATS_DOWN = (ConnectionError, TimeoutError, NatsError)


def answer(obj: Any) -> Response:
    """A JSON answer encoded by msgspec: FastAPI's own encoder walks every value and is slow on long lists."""
    return Response(msgspec.json.encode(obj), media_type="application/json")


def _error(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def create_app(settings: NatsSettings, keys: KeyRing, config: GatewayConfig | None = None) -> FastAPI:
    config = config or GatewayConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        client = await Client.connect(settings, name="trl-nats-openai")
        try:
            app.state.gateway = Gateway(client, await FileStore.open(client), config)
            yield
        finally:
            await client.close()

    app = FastAPI(title="trl-nats OpenAI fine-tuning API", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(APIError)
    async def on_api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return _error(bad_request(f"{where or 'request'}: {first.get('msg', 'invalid')}", where or None))

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            msg = f"No route {request.method} {request.url.path}: see docs/openai-api.md for the routes served."
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}."
        else:
            msg = str(exc.detail)
        return _error(APIError(exc.status_code, msg))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(unexpected(exc, f"{request.method} {request.url.path}"))

    def gateway(request: Request) -> Gateway:
        return request.app.state.gateway

    def namespace(request: Request) -> str:
        return keys.namespace(request.headers.get("authorization"), request.client.host if request.client else None)

    # -- files ---------------------------------------------------------------------------------------------
    @app.post("/v1/files")
    async def create_file(request: Request) -> Response:
        ns = namespace(request)
        limit = config.max_file_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + 65536:
            raise too_large(
                f"the upload is {declared} bytes; files are limited to {limit} bytes: split the data into smaller "
                "files, or start the server with a larger --max-file-mib.",
                "file",
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise bad_request(
                "the body must be multipart/form-data with 'file' (the JSON lines) and 'purpose' ('fine-tune').", "file"
            )
        try:
            form_cm = request.form(max_files=1, max_fields=8)
            form = await form_cm.__aenter__()
        except Exception as exc:
            raise bad_request(
                f"the body is not multipart/form-data ({exc}): send 'file' (the JSON lines) and 'purpose'.", "file"
            ) from None
        try:
            purpose = form.get("purpose")
            upload = form.get("file")
            if purpose is None:
                raise bad_request("Missing required parameter: 'purpose': send purpose='fine-tune'.", "purpose")
            if purpose != "fine-tune":
                raise bad_request(
                    f"purpose {purpose!r} is not served here: this server takes purpose 'fine-tune' only.", "purpose"
                )
            if upload is None or isinstance(upload, str):
                raise bad_request("Missing required parameter: 'file': attach the JSON lines file.", "file")
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise too_large(
                    f"the file is more than {limit} bytes, this server's limit: split the data into smaller files, "
                    "or start the server with a larger --max-file-mib.",
                    "file",
                )
            if not data.strip():
                raise bad_request("the file is empty: upload JSON lines, one training example per line.", "file")
            record = await gateway(request).files.create(ns, upload.filename or "upload.jsonl", purpose, data)
        finally:
            await form.close()
        return answer(record.object())

    @app.get("/v1/files")
    async def list_files(request: Request) -> Response:
        ns = namespace(request)
        q = request.query_params
        purpose = q.get("purpose")
        items = [r.object() for r in await gateway(request).files.list(ns) if purpose in (None, r.purpose)]
        if q.get("order") == "asc":
            items.reverse()
        return answer(objects.page(items, q.get("after"), objects.parse_limit(q.get("limit"), 10000, 10000)))

    @app.get("/v1/files/{file_id}")
    async def retrieve_file(file_id: str, request: Request) -> Response:
        return answer((await gateway(request).files.get(namespace(request), file_id)).object())

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str, request: Request) -> Response:
        files = gateway(request).files
        record = await files.get(namespace(request), file_id)
        await files.delete(record)
        return answer({"id": file_id, "object": "file", "deleted": True})

    @app.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str, request: Request) -> Response:
        files = gateway(request).files
        record = await files.get(namespace(request), file_id)
        return Response(await files.content(record), media_type="application/octet-stream")

    app.include_router(job_router(lambda request: request.app.state.gateway, namespace))
    return app


async def json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise too_large(f"the request body is {len(body)} bytes; at most {MAX_JSON_BYTES} are accepted.")
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise bad_request(f"the request body is not valid JSON ({exc}): send a JSON object.") from None


def unexpected(exc: Exception, where: str) -> APIError:
    """The answer to an exception nobody raised on purpose: 503 when NATS is out of reach, else a logged 500."""
    if isinstance(exc, NATS_DOWN):
        return nats_unavailable(exc)
    log.error("unexpected error on %s", where, exc_info=exc)
    return APIError(500, f"internal error ({type(exc).__name__}): the server log has details.", type="server_error")


async def respond(request: Request, call: Callable[[], Awaitable[Any]]) -> Response:
    """Run one route's work and answer it, errors included, in OpenAI's shape: the routes answer for
    themselves, so a host app (OGX) with its own exception handlers answers them the same way."""
    try:
        return answer(await call())
    except APIError as exc:
        return _error(exc)
    except Exception as exc:
        return _error(unexpected(exc, f"{request.method} {request.url.path}"))


def job_router(gateway_of: Callable[[Request], Any], namespace_of: Callable[[Request], str]) -> APIRouter:
    """The ``/v1/fine_tuning/jobs`` routes. ``gateway_of(request)`` gives the :class:`Gateway` (or an awaitable
    of it), ``namespace_of(request)`` the caller's namespace (raising the APIError to answer)."""
    router = APIRouter()

    async def gateway(request: Request) -> Gateway:
        found = gateway_of(request)
        return await found if inspect.isawaitable(found) else found

    @router.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            body = await json_body(request)
            req = parse_job_request(body)
            key = request.headers.get("idempotency-key")
            if key is not None and not 1 <= len(key) <= 255:
                raise bad_request("the Idempotency-Key header must be 1 to 255 characters.", "Idempotency-Key")
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            return await (await gateway(request)).create_job(ns, req, key, digest)

        return await respond(request, work)

    @router.get("/v1/fine_tuning/jobs")
    async def list_jobs(request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            q = request.query_params
            metadata = {
                k[len("metadata[") : -1]: v for k, v in q.multi_items() if k.startswith("metadata[") and k.endswith("]")
            }
            limit = objects.parse_limit(q.get("limit"), 20)
            return objects.page(await (await gateway(request)).list_jobs(ns, metadata), q.get("after"), limit)

        return await respond(request, work)

    @router.get("/v1/fine_tuning/jobs/{job_id}")
    async def retrieve_job(job_id: str, request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            return objects.job_object(await (await gateway(request)).record(ns, job_id))

        return await respond(request, work)

    @router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str, request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            return await (await gateway(request)).cancel(ns, job_id)

        return await respond(request, work)

    @router.post("/v1/fine_tuning/jobs/{job_id}/pause")
    async def pause_job(job_id: str, request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            return await (await gateway(request)).pause(ns, job_id)

        return await respond(request, work)

    @router.post("/v1/fine_tuning/jobs/{job_id}/resume")
    async def resume_job(job_id: str, request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            return await (await gateway(request)).resume(ns, job_id)

        return await respond(request, work)

    @router.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def list_events(job_id: str, request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            q = request.query_params
            limit = objects.parse_limit(q.get("limit"), 20, 1000)
            return await (await gateway(request)).events_page(ns, job_id, q.get("after"), limit)

        return await respond(request, work)

    @router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    async def list_checkpoints(job_id: str, request: Request) -> Response:
        async def work() -> Any:
            ns = namespace_of(request)
            q = request.query_params
            limit = objects.parse_limit(q.get("limit"), 10)
            return objects.page(await (await gateway(request)).checkpoints(ns, job_id), q.get("after"), limit)

        return await respond(request, work)

    return router
