"""Every message that crosses NATS, as msgspec structs, and the one codec for them.

JSON on the wire so that `nats sub 'trl.events.>'` is readable by a person.
Every top-level message carries ``schema``; decoding is strict (unknown
fields, wrong types and unknown schema versions are rejected with a reason)
and never raises anything but :class:`BadMessage`.

Lives here: job spec, job record, events, agent record, control requests.
Does not live here: subjects (``subjects.py``), state rules (``store.py``).
"""

from __future__ import annotations

import enum
import re
import time
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct, field

SCHEMA = 1
MAX_MESSAGE_BYTES = 1 << 20  # anything larger on a consumed subject is hostile

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
JobId = Annotated[str, Meta(pattern=JOB_ID_PATTERN)]
Schema = Annotated[int, Meta(ge=1)]
PosInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
NonNegFloat = Annotated[float, Meta(ge=0.0)]

_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def now() -> float:
    return time.time()


class BadMessage(ValueError):
    """A message that cannot be accepted; ``str()`` says why."""


class JobState(enum.StrEnum):
    scheduled = "scheduled"  # queued, waiting for an agent with room
    in_progress = "in_progress"  # claimed by an agent, training
    pausing = "pausing"  # pause asked: the agent saves a checkpoint at the next step, stores it, stops
    paused = "paused"  # stopped at a stored checkpoint; holds no GPUs, in no queue; resume re-queues it
    completed = "completed"  # finished, final model saved
    failed = "failed"  # gave up: error holds the reason
    cancelled = "cancelled"  # stopped at a user's request

    @property
    def terminal(self) -> bool:
        return self in (JobState.completed, JobState.failed, JobState.cancelled)


class JobKind(enum.StrEnum):
    dpo = "dpo"  # direct preference optimization on prompt/chosen/rejected rows
    sft = "sft"  # supervised fine-tuning on prompt/completion or messages rows


DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_pair",
    "apo_zero",
    "apo_down",
)
DTYPES = ("auto", "float32", "bfloat16", "float16")
OPTIMIZERS = ("adamw", "adam", "sgd")


class Resources(Struct, forbid_unknown_fields=True, kw_only=True):
    """What a job needs from the fleet. On CPU agents a "GPU" is one process slot."""

    nodes: Annotated[int, Meta(ge=1, le=64)] = 1
    gpus_per_node: Annotated[int, Meta(ge=1, le=64)] = 1
    gpu_type: str | None = None  # e.g. "H100"; None fits any

    @property
    def pool(self) -> str:
        gtype = (self.gpu_type or "any").lower()
        gtype = re.sub(r"[^a-z0-9]", "", gtype) or "any"
        return f"n{self.nodes}g{self.gpus_per_node}{gtype}"

    @property
    def node_pool(self) -> str:
        """The single-node pool one node of this job fits: an agent serving it can host one node."""
        return Resources(nodes=1, gpus_per_node=self.gpus_per_node, gpu_type=self.gpu_type).pool

    @property
    def queue(self) -> str:
        """The work-queue pool the job is published to.

        A single-node job waits in its own shape's pool. Multi-node jobs wait in one gang queue per
        node shape (``gang-g2h100``), whatever their node count: any agent that can host one node may
        fetch one and lead the gang (see docs/scheduling.md), so agents bind one queue per node shape
        instead of one per node count.
        """
        if self.nodes == 1:
            return self.pool
        return "gang-" + self.node_pool[2:]


class DatasetRef(Struct, forbid_unknown_fields=True, kw_only=True):
    """A dataset uploaded content-addressed to the datasets object store."""

    object: str  # object name in the datasets store, "sha256-<hex>"
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    rows: NonNegInt
    bytes: NonNegInt


class LoraParams(Struct, forbid_unknown_fields=True, kw_only=True):
    rank: Annotated[int, Meta(ge=1, le=1024)] = 8
    alpha: Annotated[float, Meta(gt=0)] = 16.0
    dropout: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] | None = None  # None: the model family's defaults


class TrainingParams(Struct, forbid_unknown_fields=True, kw_only=True):
    """Hyperparameters. ``None`` means "the recipe decides" (it may measure first)."""

    beta: Annotated[float, Meta(gt=0.0, le=100.0)] = 0.1
    loss_type: str = "sigmoid"
    learning_rate: Annotated[float, Meta(gt=0.0, le=1.0)] = 1e-6
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_steps: Annotated[int, Meta(ge=0, le=1_000_000)] = 0
    weight_decay: Annotated[float, Meta(ge=0.0, le=10.0)] = 0.0
    optimizer: str = "adamw"
    epochs: Annotated[int, Meta(ge=1, le=1000)] = 1
    max_steps: Annotated[int, Meta(ge=1, le=100_000_000)] | None = None
    per_device_batch_size: Annotated[int, Meta(ge=1, le=4096)] = 2
    gradient_accumulation_steps: Annotated[int, Meta(ge=1, le=4096)] = 1
    max_length: Annotated[int, Meta(ge=8, le=1_048_576)] = 512
    dtype: str = "auto"
    activation_checkpointing: bool | None = None
    cpu_offload: bool = False
    shuffle: bool = True
    seed: NonNegInt = 42
    save_steps: Annotated[int, Meta(ge=1)] | None = None  # None: about 4 checkpoints a run
    save_total_limit: Annotated[int, Meta(ge=1)] | None = None
    logging_steps: PosInt = 1
    precompute_ref: bool | None = None
    liger: bool | None = None
    lora: LoraParams | None = None


class JobSpec(Struct, forbid_unknown_fields=True, kw_only=True):
    """A training request: published on ``<prefix>.jobs.submit.<pool>`` with Nats-Msg-Id = job_id."""

    schema: Schema = SCHEMA
    job_id: JobId
    kind: JobKind = JobKind.dpo
    model: Annotated[str, Meta(min_length=1, max_length=512)]
    dataset: DatasetRef
    eval_dataset: DatasetRef | None = None
    params: TrainingParams = field(default_factory=TrainingParams)
    resources: Resources = field(default_factory=Resources)
    output_dir: str | None = None  # on the agent; None: the agent's own outputs dir
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    events_subject: str | None = None  # None: <prefix>.events.<job_id>
    trust_remote_code: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=now)


class Checkpoint(Struct, forbid_unknown_fields=True, kw_only=True):
    step: NonNegInt
    epoch: NonNegFloat
    path: str  # where the trainer wrote it, on ``node``
    node: str
    created_at: float = field(default_factory=now)
    metrics: dict[str, float] = field(default_factory=dict)
    final: bool = False
    # where any agent or client can fetch it: a directory path, or nats://<bucket>/<job>/<name> (trl_nats/artifacts)
    location: str | None = None
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")] | None = None  # of the artifact's manifest
    bytes: NonNegInt | None = None


class Allocation(Struct, forbid_unknown_fields=True, kw_only=True):
    agent: str
    node: str
    gpus: list[int]
    gpu_type: str | None = None


class JobRecord(Struct, forbid_unknown_fields=True, kw_only=True):
    """The authoritative state of a job, in the jobs KV bucket under its id.

    Changed only through ``JobStore.transition`` (compare-and-set).
    """

    schema: Schema = SCHEMA
    job_id: JobId
    spec: JobSpec
    state: JobState = JobState.scheduled
    owner: str | None = None  # agent id holding the claim while in_progress
    attempt: NonNegInt = 0
    submitted_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = field(default_factory=now)
    allocation: list[Allocation] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)  # every checkpoint event, in order
    # the newest checkpoint that is complete and stored (has a location): a new attempt resumes from it
    latest_checkpoint: Checkpoint | None = None
    # claims so far, hand-backs included (attempt counts only failed tries): numbers event message ids
    runs: NonNegInt = 0
    last_metrics: dict[str, float] = field(default_factory=dict)
    step: NonNegInt = 0
    total_steps: NonNegInt | None = None
    cancel_requested: bool = False
    error: str | None = None


class StatusEvent(Struct, tag="status", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    state: JobState
    agent: str | None = None
    message: str = ""


class MetricsEvent(Struct, tag="metrics", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    step: NonNegInt
    total_steps: NonNegInt | None = None
    epoch: NonNegFloat = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class CheckpointEvent(Struct, tag="checkpoint", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    checkpoint: Checkpoint


class LogEvent(Struct, tag="log", forbid_unknown_fields=True, kw_only=True):
    schema: Schema = SCHEMA
    job_id: JobId
    attempt: NonNegInt
    seq: NonNegInt = 0
    ts: float = field(default_factory=now)
    level: Literal["debug", "info", "warning", "error"] = "info"
    line: str


Event = StatusEvent | MetricsEvent | CheckpointEvent | LogEvent
EVENT_KINDS = ("status", "metrics", "checkpoint", "log")


class GpuInfo(Struct, forbid_unknown_fields=True, kw_only=True):
    index: NonNegInt
    name: str
    memory_mib: NonNegInt = 0
    utilization: float | None = None


class AgentRecord(Struct, forbid_unknown_fields=True, kw_only=True):
    """An agent's heartbeat, in the agents KV bucket (entries expire after the TTL)."""

    schema: Schema = SCHEMA
    agent_id: str
    node: str
    version: str
    device: Literal["cuda", "cpu"]
    gpus: list[GpuInfo]
    free_gpus: list[int]
    running_jobs: list[str]
    pools: list[str]
    started_at: float
    heartbeat_at: float = field(default_factory=now)


class GangState(enum.StrEnum):
    forming = "forming"  # the leader holds its GPUs and waits for members to join
    running = "running"  # every node joined; the job is claimed and each node runs torchrun
    stopping = "stopping"  # one node failed or the job was cancelled: every node stops its training
    aborted = "aborted"  # formation gave up (timeout, yielded to an older gang): everyone releases


class GangMember(Struct, forbid_unknown_fields=True, kw_only=True):
    agent: str
    node: str
    addr: str  # the address other nodes reach this one at (rendezvous and collectives)
    gpus: list[int]
    node_rank: NonNegInt
    joined_at: float = field(default_factory=now)
    exit_code: int | None = None  # set by the member when its torchrun has ended
    error: str | None = None
    handed_back: bool = False  # the member's agent stopped: not the training's fault


class GangRecord(Struct, forbid_unknown_fields=True, kw_only=True):
    """One multi-node job's gang, in the gangs KV bucket under the job id; changed only by compare-and-set.

    members[0] is the leader (node rank 0, the rendezvous host). See docs/scheduling.md.
    """

    schema: Schema = SCHEMA
    job_id: JobId
    leader: str
    nodes: Annotated[int, Meta(ge=2, le=64)]
    gpus_per_node: PosInt
    node_pool: str  # the single-node pool a member must serve, e.g. n1g2h100
    submitted_at: float  # the job's submission time: older gangs go first
    state: GangState = GangState.forming
    attempt: NonNegInt = 0  # the job attempt this gang runs (set when it starts running)
    rdzv_endpoint: str
    timeout_s: Annotated[float, Meta(gt=0)]
    members: list[GangMember] = field(default_factory=list)
    reason: str | None = None
    created_at: float = field(default_factory=now)
    updated_at: float = field(default_factory=now)

    @property
    def order(self) -> tuple[float, str]:
        return (self.submitted_at, self.job_id)

    def member(self, agent: str) -> GangMember | None:
        return next((m for m in self.members if m.agent == agent), None)


class CancelRequest(Struct, tag="cancel", forbid_unknown_fields=True, kw_only=True):
    """Sent on ``<prefix>.control.<agent>``; the record's cancel_requested flag is the durable twin."""

    schema: Schema = SCHEMA
    job_id: JobId
    reason: str = "cancelled by user"


# -- the codec -----------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_decoders: dict[object, msgspec.json.Decoder] = {}


def encode(msg: object) -> bytes:
    return _encoder.encode(msg)


def decode[T](data: bytes | bytearray | memoryview | str, type_: type[T]) -> T:
    """Decode ``data`` strictly as ``type_``; raise :class:`BadMessage` with the reason."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message is {len(data)} bytes, more than the {MAX_MESSAGE_BYTES} allowed")
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        msg = dec.decode(data)
    except msgspec.ValidationError as exc:
        raise BadMessage(f"invalid {_name(type_)}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadMessage(f"not valid JSON for {_name(type_)}: {exc}") from None
    schema = getattr(msg, "schema", SCHEMA)
    if schema != SCHEMA:
        raise BadMessage(
            f"{_name(type_)} has schema {schema}, this build reads schema {SCHEMA}: upgrade the older side"
        )
    return msg


def _name(type_: object) -> str:
    return getattr(type_, "__name__", None) or "event"


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID_RE.match(job_id))


def check_job_id(job_id: str) -> str:
    if not valid_job_id(job_id):
        raise BadMessage(
            f"job id {job_id!r} is not allowed: use 1-128 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return job_id


def validate_spec(spec: JobSpec) -> JobSpec:
    """Checks the struct types cannot express; raise BadMessage naming the field."""
    p = spec.params
    if spec.kind is JobKind.dpo and p.loss_type not in DPO_LOSS_TYPES:
        raise BadMessage(
            f"params.loss_type {p.loss_type!r} is not supported; choose one of {', '.join(DPO_LOSS_TYPES)}"
        )
    if p.dtype not in DTYPES:
        raise BadMessage(f"params.dtype {p.dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    if p.optimizer not in OPTIMIZERS:
        raise BadMessage(f"params.optimizer {p.optimizer!r} is not supported; choose one of {', '.join(OPTIMIZERS)}")
    if p.lora is not None and spec.kind is not JobKind.sft:
        raise BadMessage("params.lora is only supported for sft jobs")
    if ".." in spec.model.replace("\\", "/").split("/"):
        raise BadMessage(f"model {spec.model!r} must not contain '..' path segments")
    if spec.output_dir is not None and ".." in spec.output_dir.replace("\\", "/").split("/"):
        raise BadMessage(f"output_dir {spec.output_dir!r} must not contain '..' path segments")
    if spec.events_subject is not None and not re.fullmatch(
        r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", spec.events_subject
    ):
        raise BadMessage(
            f"events_subject {spec.events_subject!r} must be a plain subject: dot-separated tokens, no wildcards"
        )
    return spec
