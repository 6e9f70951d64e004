"""A ``POST /v1/fine_tuning/jobs`` body, checked field by field, and its hyperparameters resolved.

Pure functions, no I/O, so each rule has a table-driven unit test. Every refusal is a 400 naming the
field (``param``) and saying what to send.

Hyperparameters are each a number or ``"auto"``. ``"auto"`` is resolved from the training file's
size (rows) by this rule, the one place it lives (docs/openai-api.md repeats it):

- ``n_epochs``: 3, raised so the job sees at least 100 examples (at most 25 epochs), lowered so it
  sees at most 25,000 (at least 1 epoch).
- ``batch_size``: the largest power of two not above rows / 64, between 1 and 16.
- ``learning_rate_multiplier``: sqrt(batch_size / 8), between 0.25 and 2; the learning rate is the
  multiplier times the method's base rate (:data:`BASE_LEARNING_RATE`).
- ``beta`` (DPO): 0.1.

``batch_size`` is examples per optimizer step across every training process; each process takes
ceil(batch_size / processes) of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from trl_nats.messages import JobKind
from trl_nats_provider.openai.errors import bad_request

METHODS = {"dpo": JobKind.dpo, "supervised": JobKind.sft}
BASE_LEARNING_RATE = {JobKind.dpo: 1e-6, JobKind.sft: 2e-5}
HYPERPARAMETERS = {
    JobKind.dpo: ("beta", "batch_size", "learning_rate_multiplier", "n_epochs"),
    JobKind.sft: ("batch_size", "learning_rate_multiplier", "n_epochs"),
}
TOP_LEVEL = {
    "model",
    "training_file",
    "validation_file",
    "suffix",
    "seed",
    "metadata",
    "method",
    "hyperparameters",
    "integrations",
}
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILE_ID_RE = re.compile(r"^file-[A-Za-z0-9_-]{1,100}$")
MAX_METADATA = 16
HINTS = {"model": ": name the model the agents should load (a path under their model root, or a Hugging Face id)"}


@dataclass(frozen=True)
class JobRequest:
    model: str
    training_file: str
    kind: JobKind
    hyperparameters: dict[str, Any]  # each a number or "auto", as sent
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _type(value: Any) -> str:
    return (
        "null"
        if value is None
        else {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
            type(value), "number" if isinstance(value, int | float) else type(value).__name__
        )
    )


def _string(body: dict[str, Any], name: str, *, required: bool, limit: int = 512) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(
                f"Missing required parameter: '{name}'{HINTS.get(name, '')}.", name, "missing_required_parameter"
            )
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(
            f"'{name}' must be a non-empty string, got {_type(value)} {value!r}{HINTS.get(name, '')}.", name
        )
    if len(value) > limit:
        raise bad_request(f"'{name}' is {len(value)} characters; at most {limit} are allowed.", name)
    return value


def _file_id(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = _string(body, name, required=required, limit=128)
    if value is not None and not FILE_ID_RE.match(value):
        raise bad_request(
            f"'{name}' {value!r} is not a file id: upload the JSON lines with client.files.create("
            "file=..., purpose='fine-tune') and pass the id it returns (file-...).",
            name,
            "invalid_file_id",
        )
    return value


def _method(body: dict[str, Any]) -> tuple[JobKind, dict[str, Any]]:
    method = body.get("method")
    legacy = body.get("hyperparameters")
    if legacy is not None and not isinstance(legacy, dict):
        raise bad_request(f"'hyperparameters' must be an object, got {_type(legacy)}.", "hyperparameters")
    if method is None:  # OpenAI's default: supervised, hyperparameters at the top level
        return JobKind.sft, dict(legacy or {})
    if not isinstance(method, dict):
        raise bad_request(
            f"'method' must be an object like {{'type': 'dpo', 'dpo': {{...}}}}, got {_type(method)}.", "method"
        )
    mtype = method.get("type")
    if mtype == "reinforcement":
        raise bad_request(
            "method 'reinforcement' is not offered by this server: it trains with DPO and supervised "
            "fine-tuning only. Send method {'type': 'dpo'} or {'type': 'supervised'}.",
            "method.type",
            "unsupported_method",
        )
    if mtype not in METHODS:
        raise bad_request(f"method.type must be 'dpo' or 'supervised', got {mtype!r}.", "method.type")
    unknown = sorted(set(method) - {"type", mtype})
    if unknown:
        raise bad_request(
            f"method has {', '.join(map(repr, unknown))}, which a {mtype} job does not take: "
            f"send only 'type' and '{mtype}'.",
            f"method.{unknown[0]}",
        )
    section = method.get(mtype) or {}
    if not isinstance(section, dict):
        raise bad_request(f"method.{mtype} must be an object, got {_type(section)}.", f"method.{mtype}")
    extra = sorted(set(section) - {"hyperparameters"})
    if extra:
        raise bad_request(
            f"method.{mtype} has {', '.join(map(repr, extra))}; only 'hyperparameters' is taken.",
            f"method.{mtype}.{extra[0]}",
        )
    hyper = section.get("hyperparameters") or {}
    if not isinstance(hyper, dict):
        raise bad_request(
            f"method.{mtype}.hyperparameters must be an object, got {_type(hyper)}.", f"method.{mtype}.hyperparameters"
        )
    if legacy and hyper:
        raise bad_request(
            "hyperparameters are given twice, at the top level and in method: send them only in method.",
            "hyperparameters",
        )
    return METHODS[mtype], dict(hyper or legacy or {})


LIMITS: dict[str, tuple[type, float, float, bool]] = {
    # name: (type, low, high, low is exclusive)
    "beta": (float, 0.0, 2.0, True),
    "batch_size": (int, 1, 256, False),
    "learning_rate_multiplier": (float, 0.0, 10.0, True),
    "n_epochs": (int, 1, 50, False),
}


def _hyperparameters(kind: JobKind, hyper: dict[str, Any], where: str) -> dict[str, Any]:
    allowed = HYPERPARAMETERS[kind]
    out: dict[str, Any] = {}
    for name, value in hyper.items():
        param = f"{where}.{name}"
        if name not in allowed:
            raise bad_request(
                f"hyperparameter {name!r} is not taken by a {'DPO' if kind is JobKind.dpo else 'supervised'} job; "
                f"use {', '.join(allowed)}.",
                param,
            )
        if value is None or value == "auto":
            out[name] = "auto"
            continue
        typ, low, high, open_low = LIMITS[name]
        ok_type = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok_type and typ is int and float(value) != int(value):
            ok_type = False
        if not ok_type:
            what = "a whole number" if typ is int else "a number"
            raise bad_request(f"{param} must be {what} or 'auto', got {_type(value)} {value!r}.", param)
        if (value <= low if open_low else value < low) or value > high:
            span = f"{'above' if open_low else 'at least'} {low:g} and at most {high:g}"
            raise bad_request(f"{param} must be {span}, got {value!r}.", param)
        out[name] = typ(value)
    return out


def parse_job_request(body: Any) -> JobRequest:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_type(body)}.")
    unknown = sorted(set(body) - TOP_LEVEL)
    if unknown:
        raise bad_request(
            f"unknown parameter {unknown[0]!r}: a fine-tuning job takes {', '.join(sorted(TOP_LEVEL))}.", unknown[0]
        )
    model = _string(body, "model", required=True)
    training_file = _file_id(body, "training_file", required=True)
    validation_file = _file_id(body, "validation_file", required=False)
    suffix = body.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not SUFFIX_RE.match(suffix)):
        raise bad_request(
            f"suffix {suffix!r} is not allowed: use 1 to 64 letters, digits, '-' or '_'.", "suffix", "invalid_suffix"
        )
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2**31 - 1):
        raise bad_request(f"seed must be a whole number from 0 to 2147483647, got {seed!r}.", "seed")
    metadata = _metadata(body.get("metadata"))
    integrations = body.get("integrations")
    if integrations:
        raise bad_request(
            "integrations are not offered by this server: remove 'integrations' (follow the job with "
            "client.fine_tuning.jobs.list_events, or `trl-nats watch <job>`).",
            "integrations",
        )
    kind, hyper = _method(body)
    where = "hyperparameters" if body.get("method") is None else f"method.{_method_name(kind)}.hyperparameters"
    return JobRequest(
        model=model or "",
        training_file=training_file or "",
        kind=kind,
        hyperparameters=_hyperparameters(kind, hyper, where),
        validation_file=validation_file,
        suffix=suffix,
        seed=seed,
        metadata=metadata,
    )


def _method_name(kind: JobKind) -> str:
    return "dpo" if kind is JobKind.dpo else "supervised"


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"metadata must be an object of string pairs, got {_type(value)}.", "metadata")
    if len(value) > MAX_METADATA:
        raise bad_request(f"metadata has {len(value)} pairs; at most {MAX_METADATA} are allowed.", "metadata")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 64:
            raise bad_request(f"metadata key {key!r} must be 1 to 64 characters.", "metadata")
        if not isinstance(item, str) or len(item) > 512:
            raise bad_request(
                f"metadata[{key!r}] must be a string of at most 512 characters, got {_type(item)}.", "metadata"
            )
    return dict(value)


# -- "auto" ------------------------------------------------------------------------------------------------


def auto_n_epochs(rows: int) -> int:
    n = 3
    if rows * n < 100:
        n = min(25, math.ceil(100 / rows))
    if rows * n > 25_000:
        n = max(1, 25_000 // rows)
    return n


def auto_batch_size(rows: int) -> int:
    target = rows / 64
    size = 1
    while size * 2 <= target and size < 16:
        size *= 2
    return size


def auto_learning_rate_multiplier(batch_size: int) -> float:
    return round(min(2.0, max(0.25, math.sqrt(batch_size / 8))), 4)


def resolve_hyperparameters(kind: JobKind, hyper: dict[str, Any], rows: int) -> dict[str, Any]:
    """Every hyperparameter of ``kind`` as a number: sent values kept, "auto" and absent ones by the rule."""
    out = {k: v for k, v in hyper.items() if v != "auto"}
    if "n_epochs" not in out:
        out["n_epochs"] = auto_n_epochs(rows)
    if "batch_size" not in out:
        out["batch_size"] = auto_batch_size(rows)
    if "learning_rate_multiplier" not in out:
        out["learning_rate_multiplier"] = auto_learning_rate_multiplier(out["batch_size"])
    if kind is JobKind.dpo and "beta" not in out:
        out["beta"] = 0.1
    return {k: out[k] for k in HYPERPARAMETERS[kind]}


def training_values(kind: JobKind, resolved: dict[str, Any], processes: int) -> dict[str, Any]:
    """The resolved hyperparameters as :class:`~trl_nats.messages.TrainingParams` fields."""
    values: dict[str, Any] = {
        "epochs": int(resolved["n_epochs"]),
        "per_device_batch_size": max(1, math.ceil(resolved["batch_size"] / processes)),
        "learning_rate": BASE_LEARNING_RATE[kind] * resolved["learning_rate_multiplier"],
    }
    if kind is JobKind.dpo:
        values["beta"] = float(resolved["beta"])
    return values
