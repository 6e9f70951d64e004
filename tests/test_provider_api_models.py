"""trl_nats_provider.api_models (what 0.7.x and OGX serve) has llama-stack 0.6.1's shapes, field by field."""

from __future__ import annotations

from enum import Enum

import llama_stack_api
import pytest
from pydantic import BaseModel
from trl_nats_provider import api_models

MODELS = [
    name
    for name in dir(api_models)
    if isinstance(getattr(api_models, name), type)
    and issubclass(getattr(api_models, name), BaseModel | Enum)
    and getattr(api_models, name).__module__ == api_models.__name__
]


def test_every_request_and_response_type_is_covered():
    assert {
        "PreferenceOptimizeRequest",
        "SupervisedFineTuneRequest",
        "PostTrainingJobStatusResponse",
        "PostTrainingJobArtifactsResponse",
        "ListPostTrainingJobsResponse",
        "Checkpoint",
        "JobStatus",
        "DPOLossType",
    } <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_the_shape_is_llama_stack_0_6_1s(name):
    ours, theirs = getattr(api_models, name), getattr(llama_stack_api, name)
    if issubclass(ours, Enum):
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]
        return
    assert list(ours.model_fields) == list(theirs.model_fields)
    for field, info in ours.model_fields.items():
        other = theirs.model_fields[field]
        assert info.is_required() == other.is_required(), field
        if not info.is_required():
            assert _value(info.get_default(call_default_factory=True)) == _value(
                other.get_default(call_default_factory=True)
            ), field
        assert _names(info.annotation) == _names(other.annotation), field


def _value(default):
    return default.value if isinstance(default, Enum) else default


def _names(annotation) -> str:
    """The annotation with class names only (ours and theirs are different classes of the same name)."""
    text = repr(annotation)
    for mod in ("trl_nats_provider.api_models.", "llama_stack_api.post_training.models.", "llama_stack_api.common."):
        text = text.replace(mod, "")
    for mod in ("training_types.", "job_types.", "content_types."):
        text = text.replace(mod, "")
    return text
