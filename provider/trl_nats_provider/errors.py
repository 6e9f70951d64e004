"""The provider's errors, each mapped to the HTTP status Llama Stack answers with.

Llama Stack turns ``ValueError`` into 400 and its own ``LlamaStackError``
subclasses into their ``status_code``; the messages go to the caller as the
response's ``detail``, so each one says what is wrong and what to do.
"""

from __future__ import annotations

from llama_stack_api.common.errors import ConflictError, ResourceNotFoundError


class InvalidTrainingRequest(ValueError):
    """The request or its dataset cannot be trained on (HTTP 400)."""


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
