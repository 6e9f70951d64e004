"""Every NATS name the project uses, built in one place from one prefix.

Two deployments can share one NATS by choosing different prefixes: subjects,
streams, KV buckets and object stores all derive from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trl_nats.messages import JobSpec

DEFAULT_PREFIX = "trl"
MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True)
class Names:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(
                f"subject prefix {self.prefix!r} is not allowed: use dot-separated tokens of letters, digits, '_' or '-'"
            )

    # -- subjects --------------------------------------------------------------
    def submit(self, pool: str) -> str:
        """Work-queue subject a job needing ``pool`` is published on."""
        return f"{self.prefix}.jobs.submit.{pool}"

    @property
    def submit_all(self) -> str:
        return f"{self.prefix}.jobs.submit.>"

    def events(self, job_id: str) -> str:
        """Default base subject of a job's events; each event goes to ``<base>.<kind>``."""
        return f"{self.prefix}.events.{job_id}"

    def job_events(self, spec: JobSpec) -> str:
        """The base subject a job's events go to: the spec's ``events_subject``, else :meth:`events`."""
        return spec.events_subject or self.events(spec.job_id)

    def event(self, base: str, kind: str) -> str:
        return f"{base}.{kind}"

    @property
    def events_all(self) -> str:
        return f"{self.prefix}.events.>"

    @property
    def jobs_max_deliveries(self) -> str:
        """JetStream's advisory for a submission its pool consumer delivered max_deliver times."""
        return advisory_subject(self.jobs_stream)

    def control(self, agent_id: str) -> str:
        """Subject an agent listens on for cancel requests of the jobs it runs."""
        return f"{self.prefix}.control.{agent_id}"

    # -- JetStream objects -----------------------------------------------------
    @property
    def _token(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.prefix)

    @property
    def jobs_stream(self) -> str:
        return f"{self._token.upper()}_JOBS"

    @property
    def events_stream(self) -> str:
        return f"{self._token.upper()}_EVENTS"

    @property
    def jobs_bucket(self) -> str:
        return f"{self._token}_jobs"

    @property
    def agents_bucket(self) -> str:
        return f"{self._token}_agents"

    @property
    def gangs_bucket(self) -> str:
        return f"{self._token}_gangs"

    @property
    def datasets_store(self) -> str:
        return f"{self._token}_datasets"

    @property
    def artifacts_store(self) -> str:
        return f"{self._token}_artifacts"

    def pool_consumer(self, pool: str) -> str:
        """Durable pull consumer shared by every agent that serves ``pool``."""
        return f"pool-{pool}"

    def event_msg_id(self, job_id: str, run: int, seq: int) -> str:
        """Nats-Msg-Id of event ``seq`` of a job's ``run``-th claim: unique per claim, so a retried publish
        lands once and a re-claim after a hand-back (same attempt number) is never taken for a duplicate."""
        return f"{job_id}.{run}.{seq}"


def advisory_subject(stream: str) -> str:
    """JetStream's max-deliveries advisory subject for any consumer of ``stream`` (``$JS.EVENT...``)."""
    return f"{MAX_DELIVERIES_ADVISORY}.{stream}.*"
