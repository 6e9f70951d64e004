"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the status OpenAI uses.

Every answer the gateway refuses is one :class:`APIError`; its message says what is wrong and what
to send instead. 400 a request that cannot be served as sent, 401 a missing or unknown API key,
403 a caller the server does not serve, 404 an id this key cannot see, 409 a request that conflicts
with a job's state, 413 a body over the limits, 503 NATS out of reach.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(what: str, ident: str, param: str | None = None) -> APIError:
    return APIError(
        404,
        f"No {what} found with id {ident!r}: check the id (an API key sees only what it created).",
        param=param,
        code=f"{what.replace(' ', '_').replace('-', '_')}_not_found",
    )


def conflict(message: str, code: str | None = None) -> APIError:
    return APIError(409, message, code=code)


def unauthorized(message: str) -> APIError:
    return APIError(401, message, type="invalid_request_error", code="invalid_api_key")


def too_large(message: str, param: str | None = None) -> APIError:
    return APIError(413, message, param=param, code="request_too_large")


def unavailable(message: str) -> APIError:
    return APIError(503, message, type="server_error", code="service_unavailable")
