"""The node agent's settings: one frozen struct, the only place its defaults are written.

``__main__.py`` builds it from the command line (passing only what was given), the
scale benchmark builds it directly. Connection settings (servers, credentials, TTLs)
are ``trl_nats.settings.NatsSettings``, shared by every process; these are the node's own.
"""

from __future__ import annotations

import dataclasses
import platform
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from trl_nats.messages import GpuInfo
from trl_nats_agent.checkpoints import DEFAULT_MAX_BYTES

# recipe_override value that completes jobs without starting any process: for
# benchmarks and scale tests of claiming, where a process start would be all they measure
INLINE_NOOP = "inline:noop"


@dataclass(frozen=True)
class AgentSettings:
    state_dir: Path
    device: str  # "cuda" | "cpu"
    gpus: tuple[GpuInfo, ...]
    agent_id: str = ""  # "" = <node>-<random>
    node: str = field(default_factory=platform.node)
    heartbeat_s: float = 3.0
    keepalive_s: float | None = None  # None: a third of the pool consumers' ack wait
    fetch_timeout_s: float = 2.0
    cancel_grace_s: float = 10.0
    drain_timeout_s: float = 0.0  # on shutdown: wait this long for running jobs, then hand them back
    retry_backoff_s: float = 2.0
    progress_write_s: float = 1.0  # at most one KV progress write per job this often
    recipe_override: str | None = None  # a module to run instead of the kind's recipe (tests, benchmarks)
    checkpoint_store: str = "nats"  # "nats", a shared directory, or "local" (see checkpoints.py)
    checkpoint_max_bytes: int = DEFAULT_MAX_BYTES
    output_root: Path | None = None  # None: <state_dir>/outputs; job output dirs must stay inside it
    model_roots: tuple[Path, ...] = ()  # local model paths must be under one (empty: any)
    allow_remote_code: bool = False  # operator's consent to trust_remote_code jobs
    offline: bool = False  # no hub access: the ranks run with HF_HUB_OFFLINE=1, hub ids fail before launch
    gang_timeout_s: float = 60.0  # a multi-node job's gang must form within this, else it goes back to the queue
    advertise_addr: str = ""  # address other nodes reach this one at; "" = the route's source address to NATS
    metrics_port: int | None = None  # serve Prometheus metrics here (0: any free port); None: no endpoint
    metrics_host: str = "0.0.0.0"

    def __post_init__(self) -> None:
        agent_id = self.agent_id or f"{self.node}-{uuid.uuid4().hex[:6]}"
        object.__setattr__(self, "agent_id", "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in agent_id))
        object.__setattr__(self, "gpus", tuple(self.gpus))
        object.__setattr__(self, "model_roots", tuple(Path(r) for r in self.model_roots))

    @property
    def outputs(self) -> Path:
        return self.output_root or self.state_dir / "outputs"

    def keepalive_for(self, ack_wait_s: float) -> float:
        return self.keepalive_s if self.keepalive_s is not None else ack_wait_s / 3


def default(name: str):
    """The default of one setting (for help texts, which must not write it a second time)."""
    f = next(f for f in dataclasses.fields(AgentSettings) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default
