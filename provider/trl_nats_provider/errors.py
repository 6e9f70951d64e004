"""The provider's errors, each answered with the HTTP status it names.

The base classes are the host's own (:mod:`trl_nats_provider.host`).
Llama Stack 0.6.1 answers cleanly only the exception types it registered a
handler for (``ConflictError``, ``ResourceNotFoundError``, validation
errors, ...). Anything else, a plain ``ValueError`` included, goes to the
catch-all handler, which sends the response and then re-raises, so uvicorn
resets the connection and clients often see "connection reset" instead of
the 400. Every error here therefore derives from a handled type, and
``translate_exception`` answers with its ``status_code`` and message, which
says what is wrong and what to do. On 0.7.x and OGX the external API's
router answers every one of them itself, with the same status and body.
"""

from __future__ import annotations

import httpx

from trl_nats_provider.host import ConflictError, ResourceNotFoundError


class _Answered(ConflictError):
    """Base of errors that carry their own status (ConflictError only for its handler)."""

    status_code: httpx.codes = httpx.codes.CONFLICT


class InvalidTrainingRequest(ValueError, _Answered):
    """The request or its dataset cannot be trained on (HTTP 400)."""

    status_code = httpx.codes.BAD_REQUEST


class NatsUnavailable(ConnectionError, _Answered):
    """NATS cannot be reached (HTTP 503): the request may succeed once it is back."""

    status_code = httpx.codes.SERVICE_UNAVAILABLE


class TrainingJobNotFound(ResourceNotFoundError):
    """No job with this id in the jobs bucket (HTTP 404)."""

    def __init__(self, job_uuid: str) -> None:
        super().__init__(job_uuid, resource_type="Training job", client_command="alpha.post_training.job.list")


class TrainingJobFinished(ConflictError):
    """The job has ended already, so it cannot be cancelled (HTTP 409)."""

    def __init__(self, job_uuid: str, state: str) -> None:
        super().__init__(f"Training job '{job_uuid}' already ended as {state}: there is nothing to cancel.")
        self.state = state


class JobUuidInUse(ConflictError):
    """The job_uuid names an existing job that was submitted with a different request (HTTP 409)."""

    def __init__(self, job_uuid: str, differences: list[str]) -> None:
        super().__init__(
            f"job_uuid '{job_uuid}' is already used by a job with a different request "
            f"({'; '.join(differences)}): choose a new job_uuid, or resend the original request to get the same job."
        )
