"""Every message that crosses NATS, as msgspec structs, and the one codec for them.

JSON on the wire so that `nats sub 'trl.events.>'` is readable by a person.
Every top-level message carries ``schema``; decoding is strict (unknown
fields, wrong types and unknown schema versions are rejected with a reason)
and never raises anything but :class:`BadMessage`.

Lives here: the codec and shared field types (``codec.py``); job spec, record and
cancel request (``jobs.py``); job events, and the rank-0 lines that become them
(``events.py``); agent heartbeats and gangs (``fleet.py``). Import them from
``trl_nats.messages``.
Does not live here: subjects (``subjects.py``), state rules (``store.py``),
event publishing (``trl_nats/events.py``).
"""

from trl_nats.messages.codec import (
    JOB_ID_PATTERN,
    MAX_MESSAGE_BYTES,
    SCHEMA,
    BadMessage,
    JobId,
    NonNegFloat,
    NonNegInt,
    PosInt,
    Schema,
    check_job_id,
    decode,
    encode,
    now,
    valid_job_id,
)
from trl_nats.messages.events import (
    EVENT_KINDS,
    LOG_LEVELS,
    CheckpointEvent,
    Event,
    LogEvent,
    MetricsEvent,
    RankCheckpoint,
    RankEvent,
    RankLog,
    RankMetrics,
    StatusEvent,
    finite_metrics,
    rank_event,
)
from trl_nats.messages.fleet import AgentRecord, GangMember, GangRecord, GangState, GpuInfo
from trl_nats.messages.jobs import (
    DPO_LOSS_TYPES,
    DTYPES,
    OPTIMIZERS,
    Allocation,
    CancelRequest,
    Checkpoint,
    DatasetRef,
    JobKind,
    JobRecord,
    JobSpec,
    JobState,
    LoraParams,
    Resources,
    TrainingParams,
    validate_spec,
)

__all__ = [
    "DPO_LOSS_TYPES",
    "DTYPES",
    "EVENT_KINDS",
    "JOB_ID_PATTERN",
    "LOG_LEVELS",
    "MAX_MESSAGE_BYTES",
    "OPTIMIZERS",
    "SCHEMA",
    "AgentRecord",
    "Allocation",
    "BadMessage",
    "CancelRequest",
    "Checkpoint",
    "CheckpointEvent",
    "DatasetRef",
    "Event",
    "GangMember",
    "GangRecord",
    "GangState",
    "GpuInfo",
    "JobId",
    "JobKind",
    "JobRecord",
    "JobSpec",
    "JobState",
    "LogEvent",
    "LoraParams",
    "MetricsEvent",
    "NonNegFloat",
    "NonNegInt",
    "PosInt",
    "RankCheckpoint",
    "RankEvent",
    "RankLog",
    "RankMetrics",
    "Resources",
    "Schema",
    "StatusEvent",
    "TrainingParams",
    "check_job_id",
    "decode",
    "encode",
    "finite_metrics",
    "now",
    "rank_event",
    "valid_job_id",
    "validate_spec",
]
