"""Llama Stack requests to job specs, and job records back to Llama Stack responses.

Pure functions, no I/O: the adapter reads rows and talks to NATS; this
module decides what every request field means for a TRL job and what a
:class:`~trl_nats.messages.JobRecord` looks like through the API.

Request fields and where they go (anything else that would change the
training and cannot be honoured is rejected with a 400, never dropped):

================================================  ==========================================
``DPOAlignmentConfig.beta`` / ``loss_type``       ``params.beta`` / ``params.loss_type``
``TrainingConfig.n_epochs``                        ``params.epochs``
``max_steps_per_epoch``                            ``params.max_steps`` (n_epochs x cap, when
                                                   the cap is below an epoch's steps)
``gradient_accumulation_steps``                    ``params.gradient_accumulation_steps``
``data_config.batch_size`` / ``shuffle``           ``params.per_device_batch_size`` / ``shuffle``
``data_config.dataset_id`` / ``validation_…``      ``spec.dataset`` / ``spec.eval_dataset``
``optimizer_config`` type, lr, weight decay,       ``params.optimizer``, ``learning_rate``,
warmup steps                                       ``weight_decay``, ``warmup_steps``
``efficiency_config`` activation checkpointing,    ``params.activation_checkpointing``,
FSDP CPU offload                                   ``params.cpu_offload``
``dtype`` (bf16, fp16, fp32, or torch names)       ``params.dtype``
``LoraFinetuningConfig``                           ``params.lora`` (torchtune module names
                                                   translated to Hugging Face ones)
================================================  ==========================================

Not used: ``max_validation_steps`` (the agent evaluates the whole validation
set), ``logger_config``, ``memory_efficient_fsdp_wrap`` (a wrapping hint:
the agent chooses its FSDP policy).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgspec

from trl_nats.messages import (
    BadMessage,
    DatasetRef,
    JobKind,
    JobRecord,
    JobSpec,
    LoraParams,
    Resources,
    TrainingParams,
    check_job_id,
    validate_spec,
)
from trl_nats.messages import Checkpoint as JobCheckpoint
from trl_nats_provider.config import TrlNatsPostTrainingConfig
from trl_nats_provider.errors import InvalidTrainingRequest
from trl_nats_provider.host import models

# the host's own types on 0.6.1, trl_nats_provider.api_models (the same shapes) on 0.7.x and OGX
Checkpoint = models.Checkpoint
DPOAlignmentConfig = models.DPOAlignmentConfig
JobStatus = models.JobStatus
LoraFinetuningConfig = models.LoraFinetuningConfig
PostTrainingJobArtifactsResponse = models.PostTrainingJobArtifactsResponse
PostTrainingJobStatusResponse = models.PostTrainingJobStatusResponse
PostTrainingMetric = models.PostTrainingMetric
TrainingConfig = models.TrainingConfig

# Llama Stack's dtype spellings (and torch's) to the recipe's
DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "auto": "auto",
}

# DPOLossType values TRL 1.16's DPOTrainer implements under the same name
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo")

# torchtune's module names (what Llama Stack's LoRA config speaks) to Hugging Face Llama-family names
LORA_ATTN_MODULES = {
    "q_proj": "q_proj",
    "k_proj": "k_proj",
    "v_proj": "v_proj",
    "output_proj": "o_proj",
    "o_proj": "o_proj",
}
LORA_MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]
LORA_OUTPUT_MODULE = "lm_head"


def _bad(message: str) -> InvalidTrainingRequest:
    return InvalidTrainingRequest(message)


def job_id(job_uuid: str) -> str:
    try:
        return check_job_id(job_uuid)
    except ValueError as exc:
        raise _bad(f"job_uuid: {exc}") from None


def resources(config: TrlNatsPostTrainingConfig) -> Resources:
    return Resources(nodes=config.nodes, gpus_per_node=config.gpus_per_node, gpu_type=config.gpu_type)


def dataset_ids(training_config: TrainingConfig) -> tuple[str, str | None]:
    """The training and validation dataset ids; 400 when the request names no training dataset."""
    dc = training_config.data_config
    if dc is None or not dc.dataset_id:
        raise _bad(
            "training_config.data_config.dataset_id is required: register the rows with "
            "client.beta.datasets.register(...) and pass its id in data_config"
        )
    return dc.dataset_id, dc.validation_dataset_id or None


def check_extras(hyperparam_search_config: dict[str, Any] | None) -> None:
    if hyperparam_search_config:
        raise _bad(
            "hyperparam_search_config is not supported by remote::trl_nats "
            f"(got keys {sorted(hyperparam_search_config)}): send {{}} and submit one job per setting"
        )


def dpo_params(algorithm_config: DPOAlignmentConfig, training_config: TrainingConfig) -> TrainingParams:
    beta = algorithm_config.beta
    if not isinstance(beta, int | float) or not math.isfinite(beta) or beta <= 0 or beta > 100:
        raise _bad(f"algorithm_config.beta must be a number in (0, 100], got {beta!r}: it scales the DPO loss")
    loss = getattr(algorithm_config.loss_type, "value", algorithm_config.loss_type)
    if loss == "kto_pair":
        raise _bad(
            "algorithm_config.loss_type 'kto_pair' is not supported: TRL 1.16's DPOTrainer has no kto_pair loss "
            "(KTO needs unpaired data and its own trainer). Use sigmoid, hinge or ipo"
        )
    if loss not in DPO_LOSS_TYPES:
        raise _bad(f"algorithm_config.loss_type {loss!r} is not supported; use one of {', '.join(DPO_LOSS_TYPES)}")
    return _params(training_config, beta=float(beta), loss_type=loss)


def sft_params(training_config: TrainingConfig, algorithm_config: Any) -> TrainingParams:
    lora = None
    if algorithm_config is not None:
        if not isinstance(algorithm_config, LoraFinetuningConfig):
            kind = getattr(algorithm_config, "type", type(algorithm_config).__name__)
            raise _bad(
                f"algorithm_config type {kind!r} is not supported by remote::trl_nats; "
                "send LoRA, or no algorithm_config for a full fine-tune"
            )
        lora = lora_params(algorithm_config)
    return _params(training_config, lora=lora)


def lora_params(cfg: LoraFinetuningConfig) -> LoraParams:
    if cfg.use_dora:
        raise _bad("algorithm_config.use_dora is not supported: send use_dora false")
    if cfg.quantize_base:
        raise _bad("algorithm_config.quantize_base (QLoRA) is not supported: send quantize_base false")
    if not 1 <= cfg.rank <= 1024:
        raise _bad(f"algorithm_config.rank must be between 1 and 1024, got {cfg.rank}")
    if cfg.alpha <= 0:
        raise _bad(f"algorithm_config.alpha must be > 0, got {cfg.alpha}")
    modules: list[str] = []
    for name in cfg.lora_attn_modules:
        mapped = LORA_ATTN_MODULES.get(name)
        if mapped is None:
            raise _bad(
                f"algorithm_config.lora_attn_modules: unknown module {name!r}; "
                f"use any of {', '.join(sorted(LORA_ATTN_MODULES))}"
            )
        if mapped not in modules:
            modules.append(mapped)
    if cfg.apply_lora_to_mlp:
        modules += LORA_MLP_MODULES
    if cfg.apply_lora_to_output:
        modules.append(LORA_OUTPUT_MODULE)
    if not modules:
        raise _bad("algorithm_config: LoRA needs at least one module: list lora_attn_modules or set apply_lora_to_mlp")
    return LoraParams(rank=cfg.rank, alpha=float(cfg.alpha), target_modules=modules)


def _params(tc: TrainingConfig, **fixed: Any) -> TrainingParams:
    if tc.n_epochs < 1 or tc.n_epochs > 1000:
        raise _bad(f"training_config.n_epochs must be between 1 and 1000, got {tc.n_epochs}")
    if tc.max_steps_per_epoch < 1:
        raise _bad(f"training_config.max_steps_per_epoch must be at least 1, got {tc.max_steps_per_epoch}")
    if tc.gradient_accumulation_steps < 1:
        raise _bad(
            f"training_config.gradient_accumulation_steps must be at least 1, got {tc.gradient_accumulation_steps}"
        )
    values: dict[str, Any] = dict(fixed)
    values["epochs"] = tc.n_epochs
    values["gradient_accumulation_steps"] = tc.gradient_accumulation_steps
    values["dtype"] = dtype(tc.dtype)
    dc = tc.data_config
    if dc is not None:
        if dc.batch_size < 1:
            raise _bad(f"training_config.data_config.batch_size must be at least 1, got {dc.batch_size}")
        if dc.packed:
            raise _bad("training_config.data_config.packed is not supported: send packed false")
        if dc.train_on_input:
            raise _bad(
                "training_config.data_config.train_on_input is not supported: the loss is computed on "
                "completions only; send train_on_input false"
            )
        values["per_device_batch_size"] = dc.batch_size
        values["shuffle"] = dc.shuffle
    oc = tc.optimizer_config
    if oc is not None:
        if not (0 < oc.lr <= 1):
            raise _bad(f"training_config.optimizer_config.lr must be in (0, 1], got {oc.lr}")
        if oc.weight_decay < 0:
            raise _bad(f"training_config.optimizer_config.weight_decay must be >= 0, got {oc.weight_decay}")
        if oc.num_warmup_steps < 0:
            raise _bad(f"training_config.optimizer_config.num_warmup_steps must be >= 0, got {oc.num_warmup_steps}")
        values["optimizer"] = getattr(oc.optimizer_type, "value", oc.optimizer_type)
        values["learning_rate"] = oc.lr
        values["weight_decay"] = oc.weight_decay
        values["warmup_steps"] = oc.num_warmup_steps
    ec = tc.efficiency_config
    if ec is not None:
        if ec.enable_activation_offloading:
            raise _bad(
                "training_config.efficiency_config.enable_activation_offloading is not supported: "
                "use enable_activation_checkpointing or fsdp_cpu_offload to save memory"
            )
        values["activation_checkpointing"] = bool(ec.enable_activation_checkpointing)
        values["cpu_offload"] = bool(ec.fsdp_cpu_offload)
    try:
        # convert (not the constructor) so the struct's own limits are enforced too
        return msgspec.convert(values, TrainingParams)
    except msgspec.ValidationError as exc:
        raise _bad(f"training_config: {exc}") from None


def dtype(value: str | None) -> str:
    if value is None:
        return "auto"
    mapped = DTYPES.get(value.lower().removeprefix("torch."))
    if mapped is None:
        raise _bad(f"training_config.dtype {value!r} is not supported; use bf16, fp16 or fp32")
    return mapped


def steps_per_epoch(rows: int, params: TrainingParams, world_size: int) -> int:
    """Optimizer steps in one epoch, as the Hugging Face Trainer counts them."""
    per_rank = math.ceil(rows / world_size)
    batches = math.ceil(per_rank / params.per_device_batch_size)
    return max(1, batches // params.gradient_accumulation_steps)


def cap_steps(params: TrainingParams, tc: TrainingConfig, rows: int, res: Resources) -> TrainingParams:
    """Honour max_steps_per_epoch: a total step cap when it cuts epochs short, else none."""
    per_epoch = steps_per_epoch(rows, params, res.nodes * res.gpus_per_node)
    if tc.max_steps_per_epoch >= per_epoch:
        return params
    return msgspec.structs.replace(params, max_steps=tc.n_epochs * tc.max_steps_per_epoch)


def job_spec(
    *,
    kind: JobKind,
    job_uuid: str,
    model: str,
    dataset: DatasetRef,
    eval_dataset: DatasetRef | None,
    params: TrainingParams,
    config: TrlNatsPostTrainingConfig,
    output_dir: str | None = None,
    labels: dict[str, str] | None = None,
) -> JobSpec:
    if not model or not model.strip():
        raise _bad("the model to train is empty: name a model path or id the agents can load")
    if output_dir is None and config.output_dir is not None:
        output_dir = f"{config.output_dir.rstrip('/')}/{job_uuid}"
    spec = JobSpec(
        job_id=job_id(job_uuid),
        kind=kind,
        model=model,
        dataset=dataset,
        eval_dataset=eval_dataset,
        params=params,
        resources=resources(config),
        output_dir=output_dir,
        max_attempts=config.max_attempts,
        labels={"submitted_via": "llama-stack", **(labels or {})},
    )
    try:
        return validate_spec(spec)
    except BadMessage as exc:
        raise _bad(str(exc)) from None


def spec_differences(old: JobSpec, new: JobSpec) -> list[str]:
    """What differs between two specs of one job id, ignoring when each was made."""
    a = msgspec.to_builtins(old)
    b = msgspec.to_builtins(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "created_at" or a.get(key) == b.get(key):
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            for sub in sorted(set(a[key]) | set(b[key])):
                if a[key].get(sub) != b[key].get(sub):
                    out.append(f"{key}.{sub}: {a[key].get(sub)!r} then {b[key].get(sub)!r}")
        else:
            out.append(f"{key}: {a.get(key)!r} then {b.get(key)!r}")
    return out


# -- job records to responses -------------------------------------------------


def _time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def resources_allocated(record: JobRecord) -> dict[str, Any]:
    """Where the job runs (node, agent, GPUs per node), what it asked for, and how far it got."""
    res = record.spec.resources
    nodes = [
        {"node": a.node, "agent": a.agent, "gpus": list(a.gpus), "gpu_type": a.gpu_type} for a in record.allocation
    ]
    out: dict[str, Any] = {
        "requested": {"nodes": res.nodes, "gpus_per_node": res.gpus_per_node, "gpu_type": res.gpu_type},
        "nodes": nodes,
        "node": nodes[0]["node"] if nodes else None,
        "gpus": nodes[0]["gpus"] if len(nodes) == 1 else [g for n in nodes for g in n["gpus"]],
        "gpu_type": nodes[0]["gpu_type"] if nodes else None,
        "attempt": record.attempt,
        "progress": {"step": record.step, "total_steps": record.total_steps, "metrics": dict(record.last_metrics)},
    }
    if record.error:
        out["error"] = record.error
    return out


def _metric(metrics: dict[str, float], *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def training_metrics(ckpt: JobCheckpoint, kind: JobKind) -> PostTrainingMetric | None:
    """Llama Stack's four numbers from the checkpoint's metrics; None before any loss was logged.

    A validation loss that was not measured is NaN (null in JSON), never a
    copy of the training loss. Perplexity is exp(loss) for SFT, where the
    loss is cross-entropy; for DPO it is the recipe's own if reported, else NaN.
    """
    m = ckpt.metrics
    train = _metric(m, "train_loss", "loss")
    if train is None:
        return None
    val = _metric(m, "eval_loss", "validation_loss")
    ppl = _metric(m, "perplexity", "eval_perplexity")
    if ppl is None and kind is JobKind.sft:
        base = val if val is not None else train
        ppl = math.exp(base) if base < 700 else math.inf
    return PostTrainingMetric(
        epoch=_epoch(ckpt.epoch),
        train_loss=train,
        validation_loss=math.nan if val is None else val,
        perplexity=math.nan if ppl is None or not math.isfinite(ppl) else ppl,
    )


def _epoch(epoch: float) -> int:
    """The 1-based epoch a checkpoint was saved in (TRL counts fractions: 1.5 is half way through the 2nd)."""
    return max(0, math.ceil(epoch - 1e-6))


def checkpoint(record: JobRecord, ckpt: JobCheckpoint) -> Checkpoint:
    """Llama Stack's checkpoint: ``path`` is where anyone can fetch it (the stored copy, a ``nats://`` URI or a
    shared directory), else where the trainer wrote it on its node. The shape has no size field: the size is in
    the job record (``trl-nats artifacts``) and the artifact's manifest (provider/README.md)."""
    name = "final" if ckpt.final else f"checkpoint-{ckpt.step}"
    return Checkpoint(
        identifier=f"{record.job_id}/{name}",
        created_at=_time(ckpt.created_at),
        epoch=_epoch(ckpt.epoch),
        post_training_job_id=record.job_id,
        path=ckpt.location or ckpt.path,
        training_metrics=training_metrics(ckpt, record.spec.kind),
    )


def checkpoints(record: JobRecord) -> list[Checkpoint]:
    return [checkpoint(record, c) for c in sorted(record.checkpoints, key=lambda c: (c.final, c.step))]


# Llama Stack has no paused status and its status answer no message field: a paused job waits like a
# queued one, a pausing one still runs; resources_allocated (the one free-form field) says which it is
_CLOSEST_STATUS = {"paused": "scheduled", "pausing": "in_progress"}
_CLOSEST_SAYS = {
    "paused": "paused: reported as scheduled (Llama Stack has no paused status); resume it to queue it again",
    "pausing": "pausing: reported as in_progress while the agent saves the checkpoint it will resume from",
}


def status_response(record: JobRecord) -> PostTrainingJobStatusResponse:
    return PostTrainingJobStatusResponse(
        job_uuid=record.job_id,
        status=JobStatus(_CLOSEST_STATUS.get(record.state.value, record.state.value)),
        scheduled_at=_time(record.submitted_at),
        started_at=_time(record.started_at),
        completed_at=_time(record.finished_at),
        resources_allocated=_with_state(resources_allocated(record), record),
        checkpoints=checkpoints(record),
    )


def _with_state(res: dict[str, Any], record: JobRecord) -> dict[str, Any]:
    if record.state.value in _CLOSEST_SAYS:
        res.update(state=record.state.value, message=_CLOSEST_SAYS[record.state.value])
    return res


def artifacts_response(record: JobRecord) -> PostTrainingJobArtifactsResponse:
    return PostTrainingJobArtifactsResponse(job_uuid=record.job_id, checkpoints=checkpoints(record))
