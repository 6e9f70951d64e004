"""What an agent's operator allows a job to do on this machine, checked before a job is claimed.

A job spec comes from anyone who may publish on the submit subject; the
agent decides what it touches on disk and what code it runs:

- outputs go under one output root: a relative ``output_dir`` lands inside
  it, an absolute one must already be inside it (after resolving links);
- a model given as a local path must sit under one of the model roots, when
  the operator names any (hub-style ids like ``org/name`` are not paths);
- ``trust_remote_code`` (running a model repository's Python) needs the
  operator's ``--allow-remote-code`` on the agent, whatever the spec says.

Each refusal is a :class:`BadMessage` whose text says what to change; the
agent terminates the submission and fails the job with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from trl_nats.messages import BadMessage, JobSpec

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def is_hub_id(model: str) -> bool:
    """``org/name`` or ``name``; anything starting with ``/``, ``~`` or ``.`` is a local path."""
    return not model.startswith(("/", "~", ".")) and bool(_HUB_ID.match(model))


@dataclass
class AgentPolicy:
    output_root: Path
    model_roots: list[Path] = field(default_factory=list)  # empty: any local model path
    allow_remote_code: bool = False

    def __post_init__(self) -> None:
        self.output_root = self.output_root.resolve()
        self.model_roots = [r.resolve() for r in self.model_roots]

    def output_dir(self, spec: JobSpec) -> Path:
        """The job's output directory on this agent; raises BadMessage if the spec's escapes the root."""
        if spec.output_dir is None:
            return self.output_root / spec.job_id
        raw = Path(spec.output_dir)
        target = (raw if raw.is_absolute() else self.output_root / raw).resolve()
        if target == self.output_root or not target.is_relative_to(self.output_root):
            where = "absolute path" if raw.is_absolute() else "relative path"
            raise BadMessage(
                f"output_dir {spec.output_dir!r} ({where}) is outside this agent's output root {self.output_root}: "
                "use a path relative to it, or leave output_dir unset"
            )
        return target

    def check(self, spec: JobSpec) -> None:
        self.output_dir(spec)
        if spec.trust_remote_code and not self.allow_remote_code:
            raise BadMessage(
                "trust_remote_code is refused: this agent does not run code from model repositories "
                "(its operator can allow it with --allow-remote-code)"
            )
        if not is_hub_id(spec.model):
            self._check_local_model(spec.model)

    def _check_local_model(self, model: str) -> None:
        if not self.model_roots:
            return
        path = Path(model).expanduser()
        resolved = path.resolve() if path.is_absolute() else None
        if resolved is None or not any(resolved.is_relative_to(r) for r in self.model_roots):
            roots = ", ".join(str(r) for r in self.model_roots)
            raise BadMessage(
                f"model {model!r} is not a hub id and not an absolute path under this agent's model roots ({roots})"
            )

    @property
    def readable_roots(self) -> list[Path]:
        return [self.output_root]
