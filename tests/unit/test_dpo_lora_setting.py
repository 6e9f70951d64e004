"""The operator's ``dpo_lora`` setting (``trl_nats_provider/dpo_lora.py``): how its value reads, where it
applies, and that the provider config reads it the same way. The integration twins submit through a real
``llama stack run`` (``test_provider_integration.py``) and the ``openai`` SDK (``test_openai_api.py``)."""

from __future__ import annotations

import pydantic
import pytest
from trl_nats_provider import dpo_lora
from trl_nats_provider.config import TrlNatsPostTrainingConfig

from trl_nats.messages import JobKind, LoraParams, TrainingParams


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("false", None),
        ("OFF", None),
        (False, None),
        (True, LoraParams()),
        ("true", LoraParams()),
        (" on ", LoraParams()),
        ('{"rank": 16, "alpha": 32}', LoraParams(rank=16, alpha=32.0)),
        (
            {"rank": 4, "target_modules": ["q_proj"], "merge": True},
            LoraParams(rank=4, target_modules=["q_proj"], merge=True),
        ),
    ],
)
def test_values_read_as_full_dpo_or_an_adapter(value, expected):
    assert dpo_lora.parse(value) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("maybe", "neither true/false nor a JSON object"),
        ("[1, 2]", "neither true/false nor a JSON object"),
        ('{"rank": 0}', "Expected `int` >= 1"),
        ('{"rnak": 8}', "unknown field `rnak`"),
        (7, "neither true/false nor a JSON object"),
    ],
)
def test_bad_values_say_what_to_write(value, why):
    with pytest.raises(dpo_lora.DpoLoraSettingError) as err:
        dpo_lora.parse(value)
    assert why in str(err.value) and "Write true for the default adapter" in str(err.value)


def test_applies_to_dpo_jobs_without_their_own_adapter_only():
    lora = LoraParams(rank=4)
    plain = TrainingParams()
    assert dpo_lora.apply(JobKind.dpo, plain, lora).lora == lora
    assert dpo_lora.apply(JobKind.sft, plain, lora).lora is None
    assert dpo_lora.apply(JobKind.dpo, plain, None).lora is None
    own = TrainingParams(lora=LoraParams(rank=32))
    assert dpo_lora.apply(JobKind.dpo, own, lora).lora == LoraParams(rank=32)


def test_provider_config_reads_it_with_the_same_rules():
    assert TrlNatsPostTrainingConfig().dpo_lora_params is None
    assert TrlNatsPostTrainingConfig(dpo_lora=None).dpo_lora_params is None  # ${env.TRL_NATS_DPO_LORA:=} unset
    assert TrlNatsPostTrainingConfig(dpo_lora="true").dpo_lora_params == LoraParams()
    config = TrlNatsPostTrainingConfig(dpo_lora='{"rank": 16}')
    assert config.dpo_lora_params == LoraParams(rank=16)
    assert TrlNatsPostTrainingConfig(**config.model_dump()).dpo_lora_params == LoraParams(rank=16)
    with pytest.raises(pydantic.ValidationError) as err:
        TrlNatsPostTrainingConfig(dpo_lora="{bad")
    assert "TRL_NATS_DPO_LORA" in str(err.value)
    assert TrlNatsPostTrainingConfig.sample_run_config()["dpo_lora"] == "${env.TRL_NATS_DPO_LORA:=}"
