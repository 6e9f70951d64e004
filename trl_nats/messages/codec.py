"""The primitives every message shares, and the one codec for them.

JSON on the wire so that `nats sub 'trl.events.>'` is readable by a person.
Every top-level message carries ``schema``; decoding is strict (unknown
fields, wrong types and unknown schema versions are rejected with a reason)
and never raises anything but :class:`BadMessage`.
"""

from __future__ import annotations

import re
import time
from typing import Annotated

import msgspec
from msgspec import Meta

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
