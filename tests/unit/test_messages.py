"""The wire contract: strict decoding with reasons, schema versions, names and ids."""

import msgspec
import pytest

from trl_nats.messages import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    DatasetRef,
    Event,
    JobSpec,
    JobState,
    MetricsEvent,
    Resources,
    StatusEvent,
    TrainingParams,
    decode,
    encode,
    validate_spec,
)
from trl_nats.subjects import Names

REF = DatasetRef(object="sha256-" + "0" * 64, sha256="0" * 64, rows=1, bytes=10)


def spec(**kw) -> JobSpec:
    return JobSpec(job_id=kw.pop("job_id", "job-1"), model="m", dataset=REF, **kw)


def test_spec_round_trips_as_readable_json():
    s = spec(params=TrainingParams(beta=0.2, loss_type="ipo"))
    raw = encode(s)
    assert b'"loss_type":"ipo"' in raw and b'"schema":1' in raw
    assert decode(raw, JobSpec) == s


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json", "not valid JSON"),
        (b"[]", "Expected `object`"),
        (b'{"job_id": "j"}', "missing required field"),
        (b'{"job_id": "../etc", "model": "m", "dataset": {}}', "job_id"),
    ],
)
def test_malformed_spec_is_rejected_with_a_reason(payload, reason):
    with pytest.raises(BadMessage, match="JobSpec") as info:
        decode(payload, JobSpec)
    assert reason in str(info.value)


def test_unknown_fields_and_wrong_types_are_rejected():
    raw = msgspec.json.decode(encode(spec()))
    raw["surprise"] = 1
    with pytest.raises(BadMessage, match="surprise"):
        decode(msgspec.json.encode(raw), JobSpec)
    raw.pop("surprise")
    raw["params"]["beta"] = "high"
    with pytest.raises(BadMessage, match=r"params.beta"):
        decode(msgspec.json.encode(raw), JobSpec)


def test_unknown_schema_version_is_rejected():
    raw = msgspec.json.decode(encode(spec()))
    raw["schema"] = 2
    with pytest.raises(BadMessage, match="schema 2"):
        decode(msgspec.json.encode(raw), JobSpec)


def test_oversized_message_is_rejected_before_parsing():
    with pytest.raises(BadMessage, match="bytes"):
        decode(b" " * (MAX_MESSAGE_BYTES + 1), JobSpec)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"beta": -0.1}, "beta"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"per_device_batch_size": 0}, "per_device_batch_size"),
    ],
)
def test_absurd_hyperparameters_are_rejected(params, field):
    raw = msgspec.json.decode(encode(spec()))
    raw["params"].update(params)
    with pytest.raises(BadMessage, match=field):
        decode(msgspec.json.encode(raw), JobSpec)


def test_semantic_checks_name_the_field():
    with pytest.raises(BadMessage, match="loss_type 'kto_pair'"):
        validate_spec(spec(params=TrainingParams(loss_type="kto_pair")))
    with pytest.raises(BadMessage, match="dtype"):
        validate_spec(spec(params=TrainingParams(dtype="int3")))
    with pytest.raises(BadMessage, match=r"'\.\.'"):
        validate_spec(spec(output_dir="/data/../etc"))
    with pytest.raises(BadMessage, match="wildcards"):
        validate_spec(spec(events_subject="trl.events.*"))


def test_events_decode_by_their_tag():
    m = MetricsEvent(job_id="j", attempt=1, step=3, metrics={"loss": 0.5})
    s = StatusEvent(job_id="j", attempt=1, state=JobState.completed)
    assert decode(encode(m), Event) == m
    assert decode(encode(s), Event) == s
    assert b'"type":"metrics"' in encode(m)
    with pytest.raises(BadMessage):
        decode(b'{"type": "nope", "job_id": "j", "attempt": 1}', Event)


def test_pools_route_by_shape_and_type():
    assert Resources().pool == "n1g1any"
    assert Resources(gpus_per_node=8, gpu_type="H100").pool == "n1g8h100"
    assert Resources(nodes=2, gpus_per_node=4, gpu_type="A100-80GB").pool == "n2g4a10080gb"


def test_names_derive_from_one_prefix():
    n = Names("team.a")
    assert n.submit("n1g1any") == "team.a.jobs.submit.n1g1any"
    assert n.events("j1") == "team.a.events.j1"
    assert n.jobs_stream == "TEAM_A_JOBS" and n.jobs_bucket == "team_a_jobs"
    with pytest.raises(ValueError, match="prefix"):
        Names("bad prefix")
