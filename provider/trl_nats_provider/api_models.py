"""The post_training API's request and response shapes, as llama-stack 0.6.1 defined them.

Llama Stack 0.7.0 and OGX removed the API with its types; the external API
(:mod:`trl_nats_provider.external`) serves these instead, so a client sends
and receives exactly the JSON it did on 0.6.1. Field names, types, defaults
and enum values follow ``llama_stack_api.post_training`` 0.6.1 (MIT licence,
Meta Platforms); a unit test compares the JSON schemas of both on 0.6.1.
Only pydantic: importable on every host.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field


class JobStatus(Enum):
    completed = "completed"
    in_progress = "in_progress"
    failed = "failed"
    scheduled = "scheduled"
    cancelled = "cancelled"


class PostTrainingMetric(BaseModel):
    epoch: int
    train_loss: float
    validation_loss: float
    perplexity: float


class Checkpoint(BaseModel):
    identifier: str
    created_at: datetime
    epoch: int
    post_training_job_id: str
    path: str
    training_metrics: PostTrainingMetric | None = None


class OptimizerType(Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class DatasetFormat(Enum):
    instruct = "instruct"
    dialog = "dialog"


class DataConfig(BaseModel):
    dataset_id: str
    batch_size: int
    shuffle: bool
    data_format: DatasetFormat
    validation_dataset_id: str | None = None
    packed: bool | None = False
    train_on_input: bool | None = False


class OptimizerConfig(BaseModel):
    optimizer_type: OptimizerType
    lr: float
    weight_decay: float
    num_warmup_steps: int


class EfficiencyConfig(BaseModel):
    enable_activation_checkpointing: bool | None = False
    enable_activation_offloading: bool | None = False
    memory_efficient_fsdp_wrap: bool | None = False
    fsdp_cpu_offload: bool | None = False


class TrainingConfig(BaseModel):
    n_epochs: int
    max_steps_per_epoch: int = 1
    gradient_accumulation_steps: int = 1
    max_validation_steps: int | None = 1
    data_config: DataConfig | None = None
    optimizer_config: OptimizerConfig | None = None
    efficiency_config: EfficiencyConfig | None = None
    dtype: str | None = "bf16"


class LoraFinetuningConfig(BaseModel):
    type: Literal["LoRA"] = "LoRA"
    lora_attn_modules: list[str]
    apply_lora_to_mlp: bool
    apply_lora_to_output: bool
    rank: int
    alpha: int
    use_dora: bool | None = False
    quantize_base: bool | None = False


class QATFinetuningConfig(BaseModel):
    type: Literal["QAT"] = "QAT"
    quantizer_name: str
    group_size: int


AlgorithmConfig = Annotated[LoraFinetuningConfig | QATFinetuningConfig, Field(discriminator="type")]


class DPOLossType(Enum):
    sigmoid = "sigmoid"
    hinge = "hinge"
    ipo = "ipo"
    kto_pair = "kto_pair"


class DPOAlignmentConfig(BaseModel):
    beta: float
    loss_type: DPOLossType = DPOLossType.sigmoid


class PostTrainingJob(BaseModel):
    job_uuid: str


class PostTrainingJobStatusResponse(BaseModel):
    job_uuid: str
    status: JobStatus
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    resources_allocated: dict[str, Any] | None = None
    checkpoints: list[Checkpoint] = Field(default_factory=list)


class ListPostTrainingJobsResponse(BaseModel):
    data: list[PostTrainingJob]


class PostTrainingJobArtifactsResponse(BaseModel):
    job_uuid: str
    checkpoints: list[Checkpoint] = Field(default_factory=list)


class SupervisedFineTuneRequest(BaseModel):
    job_uuid: str = Field(..., description="The UUID of the job to create.")
    training_config: TrainingConfig = Field(..., description="The training configuration.")
    hyperparam_search_config: dict[str, Any] = Field(..., description="The hyperparam search configuration.")
    logger_config: dict[str, Any] = Field(..., description="The logger configuration.")
    model: str | None = Field(default=None, description="Model descriptor for training if not in provider config")
    checkpoint_dir: str | None = Field(default=None, description="The directory to save checkpoint(s) to.")
    algorithm_config: AlgorithmConfig | None = Field(default=None, description="The algorithm configuration.")


class PreferenceOptimizeRequest(BaseModel):
    job_uuid: str = Field(..., description="The UUID of the job to create.")
    finetuned_model: str = Field(..., description="The model to fine-tune.")
    algorithm_config: DPOAlignmentConfig = Field(..., description="The algorithm configuration.")
    training_config: TrainingConfig = Field(..., description="The training configuration.")
    hyperparam_search_config: dict[str, Any] = Field(..., description="The hyperparam search configuration.")
    logger_config: dict[str, Any] = Field(..., description="The logger configuration.")


class GetTrainingJobStatusRequest(BaseModel):
    job_uuid: str


class CancelTrainingJobRequest(BaseModel):
    job_uuid: str


class GetTrainingJobArtifactsRequest(BaseModel):
    job_uuid: str
