"""The operator's switch that turns LoRA on for every DPO job a front door submits.

Neither the OpenAI fine-tuning API nor Llama Stack's ``preference_optimize`` has a field for LoRA on a DPO
job, so the operator decides for all of them, with one setting:

- Llama Stack (``remote::trl_nats``, 0.6.1 and the external API on 0.7.x/OGX): ``dpo_lora`` in the
  provider's ``config:`` block, ``${env.TRL_NATS_DPO_LORA:=}`` in the shipped run configs;
- the OpenAI gateway (``trl-nats serve``): ``--dpo-lora VALUE``, or the same ``TRL_NATS_DPO_LORA``.

Values: unset, empty or ``false``: full-parameter DPO. ``true``: LoRA with the default adapter (rank 8,
alpha 16, dropout 0.05, every linear layer but the output head). A JSON object of LoRA fields sets the
adapter: ``{"rank": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"], "merge": true}``. A job that
already carries ``lora`` (e.g. from a gateway ``--set lora=...``) keeps its own; SFT jobs are untouched
(Llama Stack's SFT request has its own LoRA config).

Lives here: reading the value (:func:`parse`) and applying it to a job's parameters (:func:`apply`).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from trl_nats.messages import JobKind, LoraParams, TrainingParams

ENV = "TRL_NATS_DPO_LORA"
_OFF = ("", "0", "false", "no", "off", "none")
_ON = ("1", "true", "yes", "on")


class DpoLoraSettingError(ValueError):
    """The setting's value is not one this module can read; the message says what to write instead."""


def parse(value: Any) -> LoraParams | None:
    """The adapter every DPO job gets, or None for full-parameter DPO."""
    if value is None or value is False:
        return None
    if value is True:
        return LoraParams()
    if isinstance(value, LoraParams):
        return value
    raw = value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _OFF:
            return None
        if text.lower() in _ON:
            return LoraParams()
        try:
            value = json.loads(text)
        except ValueError:
            raise _error(value, "neither true/false nor a JSON object") from None
    if not isinstance(value, dict):
        raise _error(raw, "neither true/false nor a JSON object")
    try:
        return msgspec.convert(value, LoraParams)
    except msgspec.ValidationError as exc:
        raise _error(raw, str(exc)) from None


def apply(kind: JobKind, params: TrainingParams, lora: LoraParams | None) -> TrainingParams:
    """``params`` with the operator's adapter, for a DPO job that does not name its own."""
    if kind is not JobKind.dpo or lora is None or params.lora is not None:
        return params
    return msgspec.structs.replace(params, lora=lora)


def _error(value: Any, why: str) -> DpoLoraSettingError:
    return DpoLoraSettingError(
        f"dpo_lora ({ENV}) = {value!r}: {why}. Write true for the default adapter, false for full DPO, or a "
        'JSON object of LoRA fields such as {"rank": 16, "alpha": 32, "target_modules": ["all-linear"]}'
    )
