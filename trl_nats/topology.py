"""The JetStream objects the system needs, created idempotently.

Every process calls :func:`ensure_topology` at start; it creates what is
missing and leaves what exists (updating a stream whose config drifted).

- ``<P>_JOBS``   work-queue stream on ``<prefix>.jobs.submit.>`` (one durable pull consumer per pool)
- ``<P>_EVENTS`` limits stream on ``<prefix>.events.>`` (replayable job history)
- KV ``<p>_jobs`` (job records, CAS), ``<p>_agents`` (heartbeats, TTL) and ``<p>_gangs`` (multi-node gangs, CAS)
- object stores ``<p>_datasets`` and ``<p>_artifacts``
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from trl_nats import retry
from trl_nats.messages import MAX_MESSAGE_BYTES
from trl_nats.settings import NatsSettings

log = logging.getLogger(__name__)

# Defaults; NatsSettings.ack_wait_s / max_deliver set them. A claimed job keeps its message in flight
# with in_progress() well inside ack_wait. max_deliver is a safety net: the job's max_attempts decides.
ACK_WAIT_S = 30.0
MAX_DELIVER = 50
SUBMIT_DEDUP_WINDOW_S = 24 * 3600.0
EVENTS_DEDUP_WINDOW_S = 10 * 60.0


@dataclass
class Topology:
    js: JetStreamContext
    jobs: KeyValue
    agents: KeyValue
    gangs: KeyValue
    datasets: ObjectStore
    artifacts: ObjectStore


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    # look first: a least-privilege role (provider, viewer) may bind to a stream but not create one
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        try:
            await js.add_stream(config)
            return
        except BadRequestError:  # created meanwhile by another process
            info = await js.stream_info(config.name)
    current = info.config
    if current.num_replicas != config.num_replicas or (current.max_age or 0) != (config.max_age or 0):
        await js.update_stream(config)  # replicas or max_age changed: converge


async def _ensure_kv(js: JetStreamContext, bucket: str, **params) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(bucket=bucket, **params)


async def _ensure_obj(js: JetStreamContext, bucket: str, replicas: int) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_object_store(bucket, storage=StorageType.FILE, replicas=replicas)


async def ensure_topology(js: JetStreamContext, settings: NatsSettings) -> Topology:
    n = settings.names
    await _ensure_stream(
        js,
        StreamConfig(
            name=n.jobs_stream,
            subjects=[n.submit_all],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=settings.replicas,
            duplicate_window=SUBMIT_DEDUP_WINDOW_S,
            max_msg_size=MAX_MESSAGE_BYTES,
            discard=DiscardPolicy.NEW,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=n.events_stream,
            subjects=[n.events_all],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=settings.replicas,
            duplicate_window=EVENTS_DEDUP_WINDOW_S,
            max_age=settings.events_max_age_s,
            max_msg_size=MAX_MESSAGE_BYTES,
        ),
    )
    jobs = await _ensure_kv(
        js,
        n.jobs_bucket,
        history=5,
        storage=StorageType.FILE,
        replicas=settings.replicas,
        max_value_size=MAX_MESSAGE_BYTES,
    )
    agents = await _ensure_kv(
        js, n.agents_bucket, history=1, ttl=settings.agent_ttl_s, storage=StorageType.FILE, replicas=settings.replicas
    )
    gangs = await _ensure_kv(
        js, n.gangs_bucket, history=1, storage=StorageType.FILE, replicas=settings.replicas, max_value_size=1 << 16
    )
    datasets = await _ensure_obj(js, n.datasets_store, settings.replicas)
    artifacts = await _ensure_obj(js, n.artifacts_store, settings.replicas)
    return Topology(js=js, jobs=jobs, agents=agents, gangs=gangs, datasets=datasets, artifacts=artifacts)


async def ensure_pool_consumer(
    js: JetStreamContext, settings: NatsSettings, pool: str, *, max_deliver: int | None = None
) -> str:
    """The durable pull consumer shared by every agent serving ``pool``; returns its name.

    Gang queues pass ``max_deliver=-1``: a multi-node job goes back to the queue each time its gang
    cannot form, which is waiting, not failing, and must never exhaust a delivery limit.
    """
    n = settings.names
    durable = n.pool_consumer(pool)
    config = ConsumerConfig(
        durable_name=durable,
        filter_subject=n.submit(pool),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver if max_deliver is None else max_deliver,
        max_ack_pending=-1,
    )
    try:
        await js.add_consumer(n.jobs_stream, config)
    except BadRequestError:
        await js.consumer_info(n.jobs_stream, durable)
    return durable


async def bucket_keys(kv: KeyValue) -> list[str]:
    """Every key that has a message in ``kv`` (a deleted key's marker included: callers skip misses on get).

    Asked of the bucket's stream leader (stream info with a subjects filter), not through ``kv.keys()``: that
    creates an ephemeral consumer and trusts its first ``num_pending``, which on a cluster can be 0 on a replica
    still catching up after a restart, so ``keys()`` then says the bucket is empty (seen in the cluster soak:
    every job of 200 missing from a listing right after a rolling restart).
    """
    prefix = kv._pre  # "$KV.<bucket>." (nats-py keeps the bucket's stream name and subject prefix private)
    info = await kv._js.stream_info(kv._stream, subjects_filter=f"{prefix}>")
    return [subject[len(prefix) :] for subject in (info.state.subjects or {})]


async def ensure_topology_retrying(js: JetStreamContext, settings: NatsSettings) -> Topology:
    """:func:`ensure_topology` through an election (a cluster just started or losing a node): every process
    starts with this, so none dies of a timeout while JetStream elects its leaders."""
    return await retry.retry_write(
        lambda: ensure_topology(js, settings), "the JetStream streams and buckets", bound_s=settings.write_retry_s
    )
