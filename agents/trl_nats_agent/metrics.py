"""Prometheus metrics of one agent, served over HTTP at ``/metrics`` (``--metrics-port``).

Each agent has its own registry, so several agents in one process (the scale benchmark)
keep separate counts. Without prometheus_client installed (it comes with the agent
package) or with no port, the same calls only count in memory.

Names (all prefixed ``trl_nats_agent_``): ``gpus``, ``gpus_busy``, ``jobs_running``
(gauges); ``claims_total``, ``events_relayed_total``, ``job_failures_total``,
``job_retries_total``, ``jobs_finished_total{state}``, ``gang_formations_total{outcome}``,
``gang_joins_total`` (counters); ``claim_seconds`` (fetch of the message to the claim
committed in KV), ``queue_wait_seconds`` (submission to claim) and
``gang_reserved_seconds`` (GPUs held by a forming gang before it ran or gave up)
(histograms).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from trl_nats.messages import JobRecord, now

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class AgentMetrics:
    def __init__(self, gpus: int, *, gpus_busy: Callable[[], int], jobs_running: Callable[[], int]) -> None:
        self.claim_count = 0
        # the latest values, kept in memory too: the scale benchmark reads them
        self.claim_latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        self.queue_waits: collections.deque[float] = collections.deque(maxlen=100_000)
        self.server = None
        self.port: int | None = None
        try:
            import prometheus_client as prom
        except ImportError:  # the agent works without it; there is just no endpoint
            self.registry = None
            return
        self.registry = reg = prom.CollectorRegistry(auto_describe=True)
        p = "trl_nats_agent_"
        self.gpus = prom.Gauge(p + "gpus", "GPUs (CPU slots in CPU mode) this agent offers", registry=reg)
        self.gpus_busy = prom.Gauge(p + "gpus_busy", "GPUs reserved or training", registry=reg)
        self.jobs_running = prom.Gauge(p + "jobs_running", "jobs (or nodes of multi-node jobs) running", registry=reg)
        self.claims = prom.Counter(p + "claims", "jobs claimed by this agent (as leader for multi-node)", registry=reg)
        self.events = prom.Counter(p + "events_relayed", "training events relayed to NATS", registry=reg)
        self.failures = prom.Counter(p + "job_failures", "job attempts that ended in an error", registry=reg)
        self.retries = prom.Counter(
            p + "job_retries", "failed attempts put back in the queue for a retry", registry=reg
        )
        self.finished = prom.Counter(p + "jobs_finished", "final job states written", ["state"], registry=reg)
        self.gangs = prom.Counter(p + "gang_formations", "gangs this agent led, by outcome", ["outcome"], registry=reg)
        self.joins = prom.Counter(p + "gang_joins", "gangs this agent joined as a member", registry=reg)
        self.claim_seconds = prom.Histogram(
            p + "claim_seconds", "message fetched to claim committed", buckets=_LATENCY_BUCKETS, registry=reg
        )
        self.queue_wait = prom.Histogram(
            p + "queue_wait_seconds", "job submitted to claimed", buckets=_WAIT_BUCKETS, registry=reg
        )
        self.gang_reserved_seconds = prom.Histogram(
            p + "gang_reserved_seconds",
            "GPUs held for a forming gang before it ran or gave up",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.gpus.set(gpus)
        # read at scrape time, so they can never drift from the agent's own state
        self.gpus_busy.set_function(gpus_busy)
        self.jobs_running.set_function(jobs_running)

    def serve(self, port: int, host: str = "0.0.0.0") -> int | None:
        """Start the HTTP endpoint; returns the port (``port=0`` picks a free one)."""
        if self.registry is None:
            log.warning("prometheus_client is not installed: no metrics endpoint")
            return None
        import prometheus_client as prom

        self.server, _ = prom.start_http_server(port, addr=host, registry=self.registry)
        self.port = self.server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- the agent reports --------------------------------------------------------
    def claimed(self, record: JobRecord, fetched_at: float | None = None) -> None:
        self.claim_count += 1
        wait = max(0.0, now() - record.submitted_at)
        self.queue_waits.append(wait)
        if fetched_at is not None:
            self.claim_latencies.append(time.monotonic() - fetched_at)
        if self.registry is not None:
            self.claims.inc()
            self.queue_wait.observe(wait)
            if fetched_at is not None:
                self.claim_seconds.observe(self.claim_latencies[-1])

    def event_relayed(self) -> None:
        if self.registry is not None:
            self.events.inc()

    def finished_attempt(self, state: str, failed: bool, retried: bool) -> None:
        if self.registry is not None:
            self.finished.labels(state=state).inc()
            if failed:
                self.failures.inc()
            if retried:
                self.retries.inc()

    def gang_outcome(self, outcome: str) -> None:
        if self.registry is not None:
            self.gangs.labels(outcome=outcome).inc()

    def gang_joined(self) -> None:
        if self.registry is not None:
            self.joins.inc()

    def gang_reserved(self, seconds: float) -> None:
        if self.registry is not None:
            self.gang_reserved_seconds.observe(seconds)
