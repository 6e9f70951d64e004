"""One home for "retry a JetStream write across an election or a lost broker node".

On a JetStream cluster, a write lands only once the leader of its stream (a
KV bucket and an object store are streams too) has stored it. When that leader
dies or freezes, the other replicas elect a new one; until then every write
fails with "no response from stream", a 503, or a timeout, and a client
connected to the dead node also reconnects elsewhere. On our 3-node loopback
cluster an election takes about 5 s (docs/faults.md); ``WRITE_BOUND_S`` (60 s)
covers several of them back to back.

Every write here is retried so that it lands exactly once:

- a stream publish keeps its ``Nats-Msg-Id``, so the stream's duplicate window drops a copy
  whose first send did land but whose ack was lost;
- a KV create or compare-and-set update keeps its expected revision; when the retry is refused
  because the revision moved, the stored history is read back: if it holds exactly the bytes we
  wrote, the earlier try landed and that is success, not a conflict;
- a KV put (heartbeats) and an object put are last-writer-wins, so a plain retry is safe.

Only transient failures are retried (see :func:`transient`); anything else (a permission
violation, a bad request, a real CAS conflict) is raised at once. When the bound passes,
:class:`NotWritten` says what was not written and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import nats.errors
import nats.js.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

log = logging.getLogger(__name__)


WRITE_BOUND_S = 60.0  # how long a write keeps trying before NotWritten
# the agent's writes that end an attempt or record a checkpoint: worth riding out a broker restart,
# since giving up leaves the message to be redelivered and the attempt decided again elsewhere
RECORD_BOUND_S = 600.0
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 1.0
DUPLICATE_IN_PROCESS = 10158  # JetStream: "duplicate message id is in process"  # a new leader is usable ~0.1 s after it is elected: don't sleep through it

_TRANSIENT = (
    nats.errors.TimeoutError,  # no ack in time: the leader is gone or busy electing
    TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,  # "no response from stream": its leader is being elected
    nats.js.errors.ServiceUnavailableError,  # 503: "JetStream cluster not available", no quorum yet
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,  # too much buffered while reconnecting
    nats.errors.FlushTimeoutError,
)


class NotWritten(ConnectionError):
    """A write did not land within its bound; ``str()`` says what and why.

    A ConnectionError, so every command reports it as it reports an unreachable NATS.
    """

    def __init__(self, what: str, waited_s: float, cause: BaseException, advice: str = "") -> None:
        super().__init__(
            f"{what} was NOT written: NATS JetStream did not store it within {waited_s:.0f}s "
            f"(last error: {type(cause).__name__}: {cause}). "
            + (advice or "The cluster has no leader for it: check that a majority of the nats-server nodes are up.")
        )
        self.what = what
        self.waited_s = waited_s
        self.cause = cause


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is what an election or a node loss looks like (a retry can help)."""
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, nats.js.errors.APIError):
        # 503: no leader or quorum yet; 10158: an earlier try with this message id is still being
        # replicated (it will be stored, or not): ask again and get its ack or a duplicate ack
        return getattr(exc, "code", None) == 503 or getattr(exc, "err_code", None) == DUPLICATE_IN_PROCESS
    return False


def _refused(nc: Any, seen: int) -> bool:
    """The server reported a permission violation on ``nc`` since ``seen``: retrying cannot help."""
    return len(getattr(nc, "trl_violations", ()) or ()) > seen


async def retry_write[T](
    write: Callable[[], Awaitable[T]],
    what: str,
    *,
    bound_s: float | None = WRITE_BOUND_S,
    nc: Any = None,
) -> T:
    """Call ``write()`` until it returns, retrying transient failures with backoff for ``bound_s``.

    ``bound_s=None`` retries for as long as the process lives (the event publisher, whose caller
    never waits). ``nc``: the connection, to stop at once on a permission violation.
    """
    start = time.monotonic()
    delay = FIRST_DELAY_S
    seen = len(getattr(nc, "trl_violations", ()) or ())
    tries = 0
    while True:
        tries += 1
        try:
            return await write()
        except Exception as exc:
            if not transient(exc) or (nc is not None and _refused(nc, seen)):
                raise
            waited = time.monotonic() - start
            if bound_s is not None and waited + delay > bound_s:
                raise NotWritten(what, waited, exc) from exc
            level = logging.INFO if tries < 5 else logging.WARNING
            log.log(level, "%s not stored yet (%s: %s); retrying (%.1fs so far)", what, type(exc).__name__, exc, waited)
        await anyio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)


# -- the writes the project makes ------------------------------------------------------------


async def publish(
    js: Any,
    subject: str,
    payload: bytes,
    msg_id: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    bound_s: float | None = WRITE_BOUND_S,
    what: str | None = None,
) -> Any:
    """A stream publish, retried with the same ``Nats-Msg-Id`` (it lands once); returns the PubAck."""
    hdrs = {"Nats-Msg-Id": msg_id, **(headers or {})}
    return await retry_write(
        lambda: js.publish(subject, payload, timeout=timeout, headers=hdrs),
        what or f"message {msg_id} on {subject}",
        bound_s=bound_s,
        nc=getattr(js, "_nc", None),
    )


async def _landed(kv: Any, key: str, value: bytes, after: int) -> int | None:
    """The revision at which ``value`` was stored under ``key`` after revision ``after``, if it was."""
    try:
        current = await kv.get(key)
    except KeyNotFoundError:
        return None
    if current.revision > after and current.value == value:
        return current.revision
    try:  # someone wrote after us already: look further back
        for entry in await kv.history(key):
            if entry.revision > after and entry.value == value:
                return entry.revision
    except Exception as exc:  # history needs a consumer; without one, the current value is all we know
        log.debug("history of %s not readable: %s", key, exc)
    return None


async def _cas(kv: Any, key: str, value: bytes, last: int, what: str, bound_s: float | None) -> int:
    ambiguous = False

    async def attempt() -> int:
        nonlocal ambiguous
        try:
            if last == 0:
                return await kv.create(key, value)
            return await kv.update(key, value, last=last)
        except KeyWrongLastSequenceError:
            if ambiguous:  # an earlier try may have landed with its ack lost: is it ours?
                revision = await _landed(kv, key, value, last)
                if revision is not None:
                    log.info("%s had landed before its ack was lost (revision %d)", what, revision)
                    return revision
            raise
        except Exception as exc:
            if transient(exc):
                ambiguous = True
            raise

    return await retry_write(attempt, what, bound_s=bound_s, nc=getattr(getattr(kv, "_js", None), "_nc", None))


async def kv_create(
    kv: Any, key: str, value: bytes, *, what: str | None = None, bound_s: float | None = WRITE_BOUND_S
) -> int:
    """Create ``key``; KeyWrongLastSequenceError when it exists with another value (not ours)."""
    return await _cas(kv, key, value, 0, what or f"new key {key}", bound_s)


async def kv_update(
    kv: Any, key: str, value: bytes, last: int, *, what: str | None = None, bound_s: float | None = WRITE_BOUND_S
) -> int:
    """Compare-and-set ``key`` from revision ``last``; KeyWrongLastSequenceError on a real conflict."""
    return await _cas(kv, key, value, last, what or f"update of {key}", bound_s)


async def kv_put(
    kv: Any, key: str, value: bytes, *, what: str | None = None, bound_s: float | None = WRITE_BOUND_S
) -> int:
    """Last-writer-wins put (heartbeats): a plain retry is safe."""
    return await retry_write(
        lambda: kv.put(key, value),
        what or f"{key}",
        bound_s=bound_s,
        nc=getattr(getattr(kv, "_js", None), "_nc", None),
    )


async def obj_put(
    store: Any,
    name: str,
    data: Any,
    *,
    meta: Any = None,
    what: str | None = None,
    bound_s: float | None = WRITE_BOUND_S,
) -> Any:
    """An object put (datasets, checkpoints), retried whole; a file is rewound before each try.

    A put interrupted half way leaves chunks no object points to; the next complete put of the same
    name replaces the object, and those chunks are space only (purge the store to reclaim it).
    """

    async def attempt() -> Any:
        if hasattr(data, "seek"):
            data.seek(0)
        return await store.put(name, data, meta=meta)

    return await retry_write(
        attempt,
        what or f"object {name}",
        bound_s=bound_s,
        nc=getattr(getattr(store, "_js", None), "_nc", None),
    )
