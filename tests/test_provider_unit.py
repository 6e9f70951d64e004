"""The Llama Stack provider without a Llama Stack server: config, spec, row checks, mapping, adapter.

Fast. The adapter tests use a real nats-server and an in-memory stand-in for
the datasetio router; tests/test_provider_integration.py is their twin with a
real ``llama stack run`` and a real agent.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution

import msgspec
import pytest
import yaml
from llama_stack_api import (
    Api,
    CancelTrainingJobRequest,
    DataConfig,
    DPOAlignmentConfig,
    EfficiencyConfig,
    GetTrainingJobArtifactsRequest,
    GetTrainingJobStatusRequest,
    LoraFinetuningConfig,
    OptimizerConfig,
    PaginatedResponse,
    PreferenceOptimizeRequest,
    QATFinetuningConfig,
    SupervisedFineTuneRequest,
    TrainingConfig,
)
from llama_stack_api.common.errors import ConflictError, ResourceNotFoundError
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support import REPO
from trl_nats_provider import get_adapter_impl, mapping, rows
from trl_nats_provider.adapter import TrlNatsPostTrainingAdapter
from trl_nats_provider.config import TrlNatsPostTrainingConfig
from trl_nats_provider.errors import InvalidTrainingRequest, TrainingJobFinished, TrainingJobNotFound
from trl_nats_provider.provider import get_provider_spec
from trl_nats_provider.stack import SHIPPED_RUN_CONFIG, dump_run_config, run_config

from trl_nats.client import Client
from trl_nats.messages import (
    Allocation,
    Checkpoint,
    DatasetRef,
    JobKind,
    JobRecord,
    JobSpec,
    JobState,
    validate_spec,
)

PREFS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"},
    {"prompt": "Colour of the sky?", "chosen": "Blue", "rejected": "Green"},
    {"prompt": "Legs on a spider?", "chosen": "Eight", "rejected": "Six"},
]


def training_config(dataset_id: str | None = "prefs", **overrides) -> TrainingConfig:
    data = None
    if dataset_id is not None:
        data = DataConfig(dataset_id=dataset_id, batch_size=2, shuffle=True, data_format="instruct")
    values = dict(n_epochs=1, max_steps_per_epoch=100, data_config=data, dtype="fp32")
    values.update(overrides)
    return TrainingConfig(**values)


def dpo_request(
    job_uuid: str = "dpo-1", beta: float = 0.1, loss_type: str = "sigmoid", **tc
) -> PreferenceOptimizeRequest:
    return PreferenceOptimizeRequest(
        job_uuid=job_uuid,
        finetuned_model="/models/tiny",
        algorithm_config=DPOAlignmentConfig(beta=beta, loss_type=loss_type),
        training_config=training_config(**tc),
        hyperparam_search_config={},
        logger_config={},
    )


# -- config and declarations ------------------------------------------------------


def test_config_reads_env_substituted_values():
    # what Llama Stack hands over after ${env.X:=} substitution: strings, and None for empty ones
    cfg = TrlNatsPostTrainingConfig(
        servers="nats://a:4222, nats://b:4222", user=None, password="", gpus_per_node="2", gpu_type=""
    )
    assert cfg.servers == ["nats://a:4222", "nats://b:4222"]
    assert cfg.password is None and cfg.gpu_type is None
    settings = cfg.nats_settings()
    assert settings.servers == ["nats://a:4222", "nats://b:4222"] and settings.prefix == "trl"
    assert mapping.resources(cfg).pool == "n1g2any"


def test_config_rejects_a_bad_prefix_with_the_reason():
    with pytest.raises(ValueError, match="prefix"):
        TrlNatsPostTrainingConfig(prefix="bad prefix!")


def test_provider_spec_and_providers_d_yaml_declare_the_same_provider():
    spec = get_provider_spec()
    data = yaml.safe_load((REPO / "providers.d/remote/post_training/trl_nats.yaml").read_text())
    assert spec.provider_type == "remote::trl_nats" and spec.api is Api.post_training
    assert data["adapter_type"] == spec.adapter_type
    assert data["config_class"] == spec.config_class
    assert data["module"] == spec.module
    assert data["pip_packages"] == spec.pip_packages
    assert [Api(a) for a in data["api_dependencies"]] == spec.api_dependencies == [Api.datasetio, Api.datasets]


@pytest.mark.parametrize("declare", ["module", "providers_dir"])
def test_llama_stack_registry_finds_the_provider_both_ways(declare):
    from llama_stack.core.datatypes import StackConfig
    from llama_stack.core.distribution import get_provider_registry
    from llama_stack.core.stack import replace_env_vars

    cfg = run_config(stack_dir="/tmp/unused", declare=declare, providers_dir=REPO / "providers.d")
    stack_config = StackConfig(**replace_env_vars(cfg))
    spec = get_provider_registry(stack_config)[Api.post_training]["remote::trl_nats"]
    assert spec.module == "trl_nats_provider"
    assert spec.config_class == "trl_nats_provider.config.TrlNatsPostTrainingConfig"
    assert spec.api_dependencies == [Api.datasetio, Api.datasets]
    # the substituted provider config is what get_adapter_impl will receive
    provider = stack_config.providers["post_training"][0]
    config = TrlNatsPostTrainingConfig(**provider.config)
    assert config.servers == ["nats://127.0.0.1:4222"] and config.user is None


def test_shipped_run_config_is_the_generated_one():
    assert SHIPPED_RUN_CONFIG.read_text() == dump_run_config(run_config()), (
        "provider/trl_nats_provider/run.yaml is stale: regenerate it with "
        "python -c 'from trl_nats_provider.stack import *; SHIPPED_RUN_CONFIG.write_text(dump_run_config(run_config()))'"
    )


# -- no torch on the Llama Stack host ------------------------------------------------

# packages whose presence means a deep-learning stack came along
HEAVY = {"torch", "triton", "transformers", "trl", "accelerate", "deepspeed"}
LOCAL_PYPROJECTS = {"trl-nats-provider": REPO / "provider/pyproject.toml", "trl-nats": REPO / "pyproject.toml"}


def _requirements(name: str) -> list[Requirement]:
    # our own packages from their pyproject (installed metadata can be stale in an editable install)
    if name in LOCAL_PYPROJECTS:
        project = tomllib.loads(LOCAL_PYPROJECTS[name].read_text())["project"]
        reqs = list(project.get("dependencies", []))
        for extra, deps in project.get("optional-dependencies", {}).items():
            reqs += [f"{d}; extra == '{extra}'" for d in deps]
        return [Requirement(r) for r in reqs]
    return [Requirement(r) for r in distribution(name).requires or []]


def dependency_closure(root: str, extras: frozenset[str] = frozenset()) -> dict[str, tuple[str, ...]]:
    """Every distribution installing ``root[extras]`` pulls in (markers evaluated here), with the chain to it."""
    chains: dict[str, tuple[str, ...]] = {}
    done_extras: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str], tuple[str, ...]]] = [(canonicalize_name(root), extras, ())]
    missing = []
    while todo:
        name, extras, chain = todo.pop()
        seen = done_extras.setdefault(name, set())
        if name in chains and extras <= seen:
            continue
        seen |= extras
        chains.setdefault(name, chain + (name,))
        if name in HEAVY:
            continue  # reported by the caller; no need to walk its tree
        try:
            reqs = _requirements(name)
        except PackageNotFoundError:
            missing.append(" -> ".join(chain + (name,)))
            continue
        for req in reqs:
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((canonicalize_name(req.name), frozenset(req.extras), chain + (name,)))
    assert not missing, f"requirements not installed, so their own requirements cannot be checked: {missing}"
    return chains


def test_provider_install_pulls_in_no_torch():
    """The llama-stack 0.6.1 host (this venv); tests/test_provider_hosts.py checks the 0.7.x and OGX venvs."""
    closure = dependency_closure("trl-nats-provider", frozenset({"llama-stack-0.6"}))
    assert "llama-stack" in closure and "trl-nats" in closure and "pandas" in closure  # the walk does reach deps
    heavy = {name: " -> ".join(chain) for name, chain in closure.items() if name in HEAVY}
    assert not heavy, f"installing trl-nats-provider pulls in a training stack: {heavy}"


def test_provider_modules_import_without_torch():
    code = (
        "import sys\n"
        "import trl_nats_provider, trl_nats_provider.adapter, trl_nats_provider.mapping, trl_nats_provider.rows\n"
        "import trl_nats_provider.provider, trl_nats_provider.stack, trl_nats_provider.demo, trl_nats_provider.embedded\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'trl'})\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- rows -------------------------------------------------------------------------------


def test_preference_rows_keep_only_the_trained_fields():
    checked = rows.preference_rows([{**PREFS[0], "id": 7}, PREFS[1]], "prefs")
    assert checked == PREFS[:2]


def test_preference_rows_accept_message_lists():
    row = {
        "prompt": [{"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    assert rows.preference_rows([row], "conv") == [row]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"prompt": "p", "rejected": "r"}, "row 2: field 'chosen' is missing"),
        ({"prompt": "p", "chosen": math.nan, "rejected": "r"}, "row 2: field 'chosen' is missing"),
        ({"prompt": "p", "chosen": "  ", "rejected": "r"}, "row 2: field 'chosen' is an empty string"),
        ({"prompt": "p", "chosen": 3, "rejected": "r"}, "row 2: field 'chosen' is int"),
        ({"prompt": "p", "chosen": [{"role": "assistant", "content": "c"}], "rejected": "r"}, "use one form"),
        ({"prompt": "p", "chosen": [{"role": "bot", "content": "c"}], "rejected": "r"}, "role 'bot'"),
    ],
)
def test_preference_rows_name_the_first_bad_row_and_field(bad, expected):
    with pytest.raises(InvalidTrainingRequest, match="dataset 'prefs', row 2") as exc:
        rows.preference_rows([PREFS[0], PREFS[1], bad, {"nonsense": 1}], "prefs")
    assert expected in str(exc.value)


def test_preference_rows_reject_an_empty_dataset():
    with pytest.raises(InvalidTrainingRequest, match="has no rows"):
        rows.preference_rows([], "empty")


def test_preference_rows_reject_a_dataset_mixing_strings_and_messages():
    conv = {
        "prompt": [{"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello"}],
        "rejected": [{"role": "assistant", "content": "No"}],
    }
    with pytest.raises(InvalidTrainingRequest, match="row 1: fields are message lists but row 0 uses strings"):
        rows.preference_rows([PREFS[0], conv], "mixed")


def test_sft_rows_normalise_llama_stack_forms():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert rows.sft_rows([{"prompt": "a", "completion": "b"}], "d") == [{"prompt": "a", "completion": "b"}]
    assert rows.sft_rows([{"messages": msgs}], "d") == [{"messages": msgs}]
    import json

    assert rows.sft_rows([{"dialog": json.dumps(msgs)}], "d") == [{"messages": msgs}]
    assert rows.sft_rows([{"input_query": "q", "expected_answer": "a"}], "d") == [{"prompt": "q", "completion": "a"}]
    assert rows.sft_rows([{"chat_completion_input": json.dumps(msgs[:1]), "expected_answer": "Hello"}], "d") == [
        {"prompt": msgs[:1], "completion": [{"role": "assistant", "content": "Hello"}]}
    ]


def test_sft_rows_name_the_first_bad_row_and_field():
    with pytest.raises(InvalidTrainingRequest, match="dataset 'sft', row 1: field 'completion' is missing"):
        rows.sft_rows([{"prompt": "a", "completion": "b"}, {"prompt": "c"}], "sft")
    with pytest.raises(InvalidTrainingRequest, match="row 0: .*none of the supervised forms"):
        rows.sft_rows([{"question": "a"}], "sft")
    with pytest.raises(InvalidTrainingRequest, match="no assistant message"):
        rows.sft_rows([{"messages": [{"role": "user", "content": "hi"}]}], "sft")


# -- request mapping ----------------------------------------------------------------------


def test_dpo_request_maps_every_honoured_field():
    tc = training_config(
        n_epochs=3,
        gradient_accumulation_steps=2,
        optimizer_config=OptimizerConfig(optimizer_type="sgd", lr=5e-5, weight_decay=0.01, num_warmup_steps=3),
        efficiency_config=EfficiencyConfig(enable_activation_checkpointing=True, fsdp_cpu_offload=True),
        dtype="bf16",
    )
    params = mapping.dpo_params(DPOAlignmentConfig(beta=0.25, loss_type="ipo"), tc)
    assert (params.beta, params.loss_type) == (0.25, "ipo")
    assert (params.epochs, params.gradient_accumulation_steps, params.per_device_batch_size) == (3, 2, 2)
    assert (params.optimizer, params.learning_rate, params.weight_decay, params.warmup_steps) == ("sgd", 5e-5, 0.01, 3)
    assert params.activation_checkpointing is True and params.cpu_offload is True
    assert params.dtype == "bfloat16" and params.shuffle is True and params.lora is None


@pytest.mark.parametrize(
    ("beta", "loss", "tc", "expected"),
    [
        (-0.1, "sigmoid", {}, "algorithm_config.beta must be a number in (0, 100]"),
        (0.0, "sigmoid", {}, "algorithm_config.beta"),
        (0.1, "kto_pair", {}, "'kto_pair' is not supported"),
        (0.1, "sigmoid", {"n_epochs": 0}, "training_config.n_epochs must be between 1 and 1000, got 0"),
        (0.1, "sigmoid", {"max_steps_per_epoch": 0}, "max_steps_per_epoch must be at least 1"),
        (0.1, "sigmoid", {"dtype": "int8"}, "training_config.dtype 'int8' is not supported"),
        (0.1, "sigmoid", {"efficiency_config": EfficiencyConfig(enable_activation_offloading=True)}, "offloading"),
    ],
)
def test_dpo_request_problems_are_named(beta, loss, tc, expected):
    with pytest.raises(InvalidTrainingRequest) as exc:
        mapping.dpo_params(DPOAlignmentConfig(beta=beta, loss_type=loss), training_config(**tc))
    assert expected in str(exc.value)


def test_an_unknown_loss_type_is_named_even_past_pydantic():
    cfg = DPOAlignmentConfig.model_construct(beta=0.1, loss_type="wasserstein")
    with pytest.raises(InvalidTrainingRequest, match="loss_type 'wasserstein' is not supported; use one of sigmoid"):
        mapping.dpo_params(cfg, training_config())


def test_data_config_options_that_cannot_be_honoured_are_rejected():
    for field in ("packed", "train_on_input"):
        dc = DataConfig(dataset_id="d", batch_size=2, shuffle=False, data_format="instruct", **{field: True})
        with pytest.raises(InvalidTrainingRequest, match=f"data_config.{field} is not supported"):
            mapping.sft_params(training_config(data_config=dc), None)
    with pytest.raises(InvalidTrainingRequest, match="data_config.dataset_id is required"):
        mapping.dataset_ids(training_config(dataset_id=None))
    with pytest.raises(InvalidTrainingRequest, match="hyperparam_search_config is not supported"):
        mapping.check_extras({"lr": [1e-5, 1e-4]})


def test_lora_config_maps_torchtune_module_names_to_hugging_face_ones():
    cfg = LoraFinetuningConfig(
        lora_attn_modules=["q_proj", "v_proj", "output_proj"],
        apply_lora_to_mlp=True,
        apply_lora_to_output=False,
        rank=4,
        alpha=8,
    )
    params = mapping.sft_params(training_config(), cfg)
    assert params.lora is not None
    assert (params.lora.rank, params.lora.alpha) == (4, 8.0)
    assert params.lora.target_modules == ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert mapping.sft_params(training_config(), None).lora is None


def test_lora_options_that_cannot_be_honoured_are_rejected():
    base = dict(lora_attn_modules=["q_proj"], apply_lora_to_mlp=False, apply_lora_to_output=False, rank=4, alpha=8)
    with pytest.raises(InvalidTrainingRequest, match="use_dora"):
        mapping.sft_params(training_config(), LoraFinetuningConfig(**base, use_dora=True))
    with pytest.raises(InvalidTrainingRequest, match="unknown module 'w9'"):
        mapping.sft_params(training_config(), LoraFinetuningConfig(**{**base, "lora_attn_modules": ["w9"]}))
    with pytest.raises(InvalidTrainingRequest, match="type 'QAT' is not supported"):
        mapping.sft_params(training_config(), QATFinetuningConfig(quantizer_name="int4", group_size=32))


def test_max_steps_per_epoch_caps_steps_only_when_it_cuts_an_epoch_short():
    res = mapping.resources(TrlNatsPostTrainingConfig(gpus_per_node=2))
    tc = training_config(n_epochs=3, max_steps_per_epoch=2)
    params = mapping.dpo_params(DPOAlignmentConfig(beta=0.1), tc)
    # 40 rows over 2 ranks, batch 2: 10 steps an epoch, capped at 2 -> 6 in all
    assert mapping.cap_steps(params, tc, rows=40, res=res).max_steps == 6
    # 8 rows: 2 steps an epoch, the cap does not bite -> epochs decide
    assert mapping.cap_steps(params, tc, rows=8, res=res).max_steps is None


def ref(n: int = 4) -> DatasetRef:
    return DatasetRef(object="sha256-" + "0" * 64, sha256="0" * 64, rows=n, bytes=100)


def test_job_spec_is_valid_and_carries_provider_defaults():
    cfg = TrlNatsPostTrainingConfig(gpus_per_node=2, gpu_type="H100", output_dir="/ckpt/", max_attempts=2)
    spec = mapping.job_spec(
        kind=JobKind.dpo,
        job_uuid="j-1",
        model="/models/tiny",
        dataset=ref(),
        eval_dataset=None,
        params=mapping.dpo_params(DPOAlignmentConfig(beta=0.1), training_config()),
        config=cfg,
        labels={"dataset_id": "prefs"},
    )
    validate_spec(spec)
    assert spec.output_dir == "/ckpt/j-1" and spec.max_attempts == 2
    assert spec.resources.pool == "n1g2h100"
    assert spec.labels == {"submitted_via": "llama-stack", "dataset_id": "prefs"}
    with pytest.raises(InvalidTrainingRequest, match="job_uuid: job id 'a b' is not allowed"):
        mapping.job_id("a b")


def test_spec_differences_ignore_creation_time_and_name_changed_fields():
    a = JobSpec(job_id="j", model="m", dataset=ref(), created_at=1.0)
    b = msgspec.structs.replace(a, created_at=2.0)
    assert mapping.spec_differences(a, b) == []
    c = msgspec.structs.replace(a, params=msgspec.structs.replace(a.params, beta=0.5))
    assert mapping.spec_differences(a, c) == ["params.beta: 0.1 then 0.5"]


# -- records to responses ------------------------------------------------------------------


def record(**overrides) -> JobRecord:
    spec = JobSpec(job_id="j-2", model="m", dataset=ref(), kind=JobKind.sft)
    values = dict(
        job_id="j-2",
        spec=spec,
        state=JobState.completed,
        attempt=1,
        submitted_at=1_700_000_000.0,
        started_at=1_700_000_005.0,
        finished_at=1_700_000_060.0,
        allocation=[Allocation(agent="agent-1", node="node-a", gpus=[0, 1], gpu_type="H100")],
        checkpoints=[
            Checkpoint(step=8, epoch=2.0, path="/out/j-2/final", node="node-a", metrics={"loss": 1.0}, final=True),
            Checkpoint(step=4, epoch=1.5, path="/out/j-2/checkpoint-4", node="node-a", metrics={}),
        ],
        last_metrics={"loss": 1.0, "rewards/margins": 0.3},
        step=8,
        total_steps=8,
    )
    values.update(overrides)
    return JobRecord(**values)


def test_status_response_names_node_gpus_times_and_checkpoints():
    rec = record()
    resp = mapping.status_response(rec)
    assert resp.status.value == "completed"
    assert resp.scheduled_at.timestamp() == 1_700_000_000.0 and resp.completed_at.timestamp() == 1_700_000_060.0
    res = resp.resources_allocated
    assert (res["node"], res["gpus"], res["gpu_type"]) == ("node-a", [0, 1], "H100")
    assert res["nodes"] == [{"node": "node-a", "agent": "agent-1", "gpus": [0, 1], "gpu_type": "H100"}]
    assert res["progress"] == {"step": 8, "total_steps": 8, "metrics": {"loss": 1.0, "rewards/margins": 0.3}}
    first, final = resp.checkpoints
    assert (first.identifier, first.epoch, first.training_metrics) == ("j-2/checkpoint-4", 2, None)
    assert (final.identifier, final.epoch, final.path) == ("j-2/final", 2, "/out/j-2/final")
    m = final.training_metrics
    assert m.train_loss == 1.0 and math.isnan(m.validation_loss) and m.perplexity == pytest.approx(math.e)
    assert mapping.artifacts_response(rec).checkpoints == resp.checkpoints


def test_status_response_of_a_queued_job_has_no_allocation_yet():
    resp = mapping.status_response(
        record(state=JobState.scheduled, started_at=None, finished_at=None, allocation=[], checkpoints=[])
    )
    assert resp.status.value == "scheduled" and resp.started_at is None and resp.checkpoints == []
    assert resp.resources_allocated["node"] is None and resp.resources_allocated["requested"]["gpus_per_node"] == 1


def test_a_stored_checkpoint_is_named_by_where_anyone_can_fetch_it():
    stored = Checkpoint(
        step=4,
        epoch=1.0,
        path="/out/j-2/checkpoint-4",
        node="node-a",
        location="nats://trl_artifacts/j-2/checkpoint-4",
        sha256="0" * 64,
        bytes=1234,
    )
    unstored = Checkpoint(step=6, epoch=1.5, path="/out/j-2/checkpoint-6", node="node-a")
    first, second = mapping.artifacts_response(record(checkpoints=[stored, unstored])).checkpoints
    assert (first.identifier, first.path) == ("j-2/checkpoint-4", "nats://trl_artifacts/j-2/checkpoint-4")
    assert (second.identifier, second.path) == ("j-2/checkpoint-6", "/out/j-2/checkpoint-6")


@pytest.mark.parametrize("state, shown", [(JobState.paused, "scheduled"), (JobState.pausing, "in_progress")])
def test_a_paused_job_shows_the_closest_status_and_says_so(state, shown):
    resp = mapping.status_response(record(state=state, finished_at=None, allocation=[]))
    assert resp.status.value == shown
    assert resp.resources_allocated["state"] == state.value
    assert resp.resources_allocated["message"].startswith(f"{state.value}: reported as {shown}")
    running = mapping.status_response(record(state=JobState.in_progress, finished_at=None))
    assert "state" not in running.resources_allocated and "message" not in running.resources_allocated


# -- the adapter against a real nats-server -------------------------------------------------


class RowsDatasetIO:
    """The datasetio router's iterrows contract over in-memory datasets, in pages of ``page`` rows."""

    def __init__(self, datasets: dict[str, list[dict]], page: int | None = None) -> None:
        self.datasets = datasets
        self.page = page

    async def iterrows(self, request) -> PaginatedResponse:
        if request.dataset_id not in self.datasets:
            # the words of Llama Stack's routing table for an unregistered dataset
            raise ValueError(f"Dataset `{request.dataset_id}` not served by provider: `localfs`.")
        data = self.datasets[request.dataset_id]
        start = request.start_index or 0
        end = len(data) if self.page is None else min(start + self.page, len(data))
        return PaginatedResponse(data=data[start:end], has_more=end < len(data))


@pytest.fixture
async def adapter(settings):
    datasetio = RowsDatasetIO({"prefs": PREFS * 3, "bad": [PREFS[0], {"prompt": "p", "rejected": "r"}]}, page=5)
    cfg = TrlNatsPostTrainingConfig(servers=settings.servers, prefix=settings.prefix)
    impl = await get_adapter_impl(cfg, {Api.datasetio: datasetio, Api.datasets: None})
    assert isinstance(impl, TrlNatsPostTrainingAdapter)
    yield impl
    await impl.shutdown()


async def test_adapter_reads_every_page_and_queues_one_job_per_job_uuid(adapter, settings):
    assert (await adapter.preference_optimize(dpo_request("dpo-a"))).job_uuid == "dpo-a"
    assert (await adapter.preference_optimize(dpo_request("dpo-a"))).job_uuid == "dpo-a"
    async with await Client.connect(settings) as client:
        jobs = await client.list_jobs()
        assert [j.job_id for j in jobs] == ["dpo-a"]
        spec = jobs[0].spec
        assert spec.dataset.rows == 12 and spec.kind is JobKind.dpo and spec.labels["dataset_id"] == "prefs"
        stream = await client.js.stream_info(settings.names.jobs_stream)
        assert stream.state.messages == 1
    status = await adapter.get_training_job_status(GetTrainingJobStatusRequest(job_uuid="dpo-a"))
    assert status.status.value == "scheduled"
    assert [j.job_uuid for j in (await adapter.get_training_jobs()).data] == ["dpo-a"]


async def test_adapter_refuses_a_reused_job_uuid_with_another_request(adapter):
    await adapter.preference_optimize(dpo_request("dpo-b"))
    with pytest.raises(ConflictError, match=r"already used .*params.beta: 0.1 then 0.2"):
        await adapter.preference_optimize(dpo_request("dpo-b", beta=0.2))


async def test_adapter_answers_400_for_missing_datasets_and_bad_rows(adapter):
    with pytest.raises(InvalidTrainingRequest, match="dataset 'nope' cannot be read .*register it first"):
        await adapter.preference_optimize(dpo_request(dataset_id="nope"))
    with pytest.raises(InvalidTrainingRequest, match="dataset 'bad', row 1: field 'chosen' is missing"):
        await adapter.preference_optimize(dpo_request(dataset_id="bad"))
    assert (await adapter.get_training_jobs()).data == []


async def test_adapter_sft_needs_a_model_and_maps_lora(adapter, settings):
    adapter.datasetio.datasets["sft"] = [{"prompt": "a", "completion": "b"}] * 4
    req = SupervisedFineTuneRequest(
        job_uuid="sft-a",
        training_config=training_config(dataset_id="sft"),
        hyperparam_search_config={},
        logger_config={},
        algorithm_config=LoraFinetuningConfig(
            lora_attn_modules=["q_proj", "v_proj"], apply_lora_to_mlp=False, apply_lora_to_output=False, rank=4, alpha=8
        ),
    )
    with pytest.raises(InvalidTrainingRequest, match="model is required"):
        await adapter.supervised_fine_tune(req)
    req.model = "/models/tiny"
    req.checkpoint_dir = "/ckpt/sft-a"
    await adapter.supervised_fine_tune(req)
    async with await Client.connect(settings) as client:
        spec = (await client.job("sft-a").status()).spec
    assert spec.kind is JobKind.sft and spec.output_dir == "/ckpt/sft-a"
    assert spec.params.lora is not None and spec.params.lora.target_modules == ["q_proj", "v_proj"]
    assert spec.labels["algorithm"] == "lora"


async def test_adapter_cancel_and_reads_name_unknown_and_finished_jobs(adapter):
    with pytest.raises(TrainingJobNotFound, match="Training job 'ghost' not found"):
        await adapter.get_training_job_status(GetTrainingJobStatusRequest(job_uuid="ghost"))
    with pytest.raises(ResourceNotFoundError):
        await adapter.cancel_training_job(CancelTrainingJobRequest(job_uuid="ghost"))
    with pytest.raises(ResourceNotFoundError):
        await adapter.get_training_job_artifacts(GetTrainingJobArtifactsRequest(job_uuid="not a valid id"))
    await adapter.preference_optimize(dpo_request("dpo-c"))
    await adapter.cancel_training_job(CancelTrainingJobRequest(job_uuid="dpo-c"))
    status = await adapter.get_training_job_status(GetTrainingJobStatusRequest(job_uuid="dpo-c"))
    assert status.status.value == "cancelled" and status.completed_at is not None
    with pytest.raises(TrainingJobFinished, match="already ended as cancelled"):
        await adapter.cancel_training_job(CancelTrainingJobRequest(job_uuid="dpo-c"))


async def test_adapter_reports_an_unreachable_nats_as_a_connection_error():
    cfg = TrlNatsPostTrainingConfig(servers="nats://127.0.0.1:9", connect_timeout=0.5, request_timeout=1)
    impl = TrlNatsPostTrainingAdapter(cfg, RowsDatasetIO({}))
    with pytest.raises(ConnectionError, match="remote::trl_nats cannot reach NATS"):
        await impl.get_training_jobs()


def test_examples_and_demo_are_importable_scripts():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args in (
        ["-m", "trl_nats_provider.demo", "--help"],
        [str(REPO / "examples/llama_stack_walkthrough.py"), "--help"],
    ):
        out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "usage" in out.stdout.lower()
        if "trl_nats_provider.demo" in args:
            assert "--stack {0.6,0.7,ogx}" in out.stdout and "--stack-bin" in out.stdout, out.stdout
