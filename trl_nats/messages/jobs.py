"""A job: what is asked (spec, parameters, resources), its authoritative record, and a cancel request."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from trl_nats.messages.codec import SCHEMA, BadMessage, JobId, NonNegFloat, NonNegInt, PosInt, Schema, now


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
    target_modules: list[str] | None = None  # None or ["all-linear"]: every linear layer but the output head
    merge: bool | None = None  # also write the base model with the adapter merged in (None: sft yes, dpo no)


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
    max_length: Annotated[int, Meta(ge=8, le=1_048_576)] | None = None  # None: the model's context length
    max_prompt_length: Annotated[int, Meta(ge=1, le=1_048_576)] | None = None  # None: half of max_length
    padding_free: bool | None = None  # pack DPO sequences without padding (None: where shown correct)
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


class CancelRequest(Struct, tag="cancel", forbid_unknown_fields=True, kw_only=True):
    """Sent on ``<prefix>.control.<agent>``; the record's cancel_requested flag is the durable twin."""

    schema: Schema = SCHEMA
    job_id: JobId
    reason: str = "cancelled by user"


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
    if p.max_length is not None and p.max_prompt_length is not None and p.max_prompt_length >= p.max_length:
        raise BadMessage("params.max_prompt_length must be below params.max_length, to leave room for a completion")
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
