"""What an artifact is: its name, its URI, and its manifest (every file with its size and sha256).

An artifact is one directory a trainer wrote for a job: ``checkpoint-N`` (a Trainer checkpoint:
Hugging Face weights, config and tokenizer, plus optimizer, scheduler and RNG state) or ``final``
(the trained model, ``from_pretrained``-loadable; for LoRA the adapter files). Its manifest is the
authority a pull checks every byte against; the job record holds the manifest's own sha256, so a
manifest swapped in the store is refused too.

URIs: ``nats://<bucket>/<job>/<name>`` (the NATS object store) or an absolute path
``<root>/<job>/<name>`` (a shared directory).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Annotated

import msgspec
from msgspec import Meta, Struct, field

from trl_nats.messages import JOB_ID_PATTERN, now

MANIFEST_FILE = "trl_nats_manifest.json"
NATS_SCHEME = "nats://"
FINAL = "final"
_NAME_RE = re.compile(r"^(final|checkpoint-(\d+))$")
_JOB_RE = re.compile(JOB_ID_PATTERN)
_BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]+$")
BLOCK = 1 << 20  # read/hash/copy granularity: bounded memory whatever the file size

Sha256 = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


class ArtifactError(RuntimeError):
    """An artifact cannot be stored, found or trusted; the message says what is wrong and what to do."""


class ManifestFile(Struct, forbid_unknown_fields=True, kw_only=True):
    path: str  # relative, '/'-separated, no '..'
    size: Annotated[int, Meta(ge=0)]
    sha256: Sha256


class Manifest(Struct, forbid_unknown_fields=True, kw_only=True):
    schema: int = 1
    job_id: str
    name: str  # "final" or "checkpoint-N"
    step: int | None = None
    final: bool = False
    files: list[ManifestFile] = field(default_factory=list)
    created_at: float = field(default_factory=now)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


class ArtifactInfo(Struct, kw_only=True):
    """One artifact of a job as ``trl-nats artifacts`` shows it."""

    name: str
    step: int | None
    final: bool
    uri: str
    bytes: int
    present: bool  # False once pruned (or never reachable from here)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ArtifactError(f"artifact name {name!r} is not allowed: use 'final' or 'checkpoint-<step>'")
    return name


def step_of(name: str) -> int | None:
    m = _NAME_RE.match(name)
    return int(m[2]) if m and m[2] else None


def artifact_name(checkpoint: int | str) -> str:
    """``--checkpoint`` as given (a step, "final", or "checkpoint-N") -> the artifact name."""
    text = str(checkpoint).strip()
    if text.isdigit():
        return f"checkpoint-{int(text)}"
    return check_name(text)


def check_relpath(path: str) -> str:
    """A manifest entry must stay inside the artifact directory: refuse absolute paths and '..'."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path or path.startswith("."):
        raise ArtifactError(f"manifest entry {path!r} is not a plain relative path: refusing the artifact")
    return path


def nats_uri(bucket: str, job_id: str, name: str) -> str:
    return f"{NATS_SCHEME}{bucket}/{job_id}/{name}"


def parse_nats_uri(uri: str) -> tuple[str, str, str]:
    """``nats://<bucket>/<job>/<name>`` -> (bucket, job, name)."""
    parts = uri.removeprefix(NATS_SCHEME).split("/")
    if not uri.startswith(NATS_SCHEME) or len(parts) != 3 or not _BUCKET_RE.match(parts[0]):
        raise ArtifactError(f"{uri!r} is not an artifact URI: expected nats://<bucket>/<job>/<name>")
    if not _JOB_RE.match(parts[1]):
        raise ArtifactError(f"{uri!r}: {parts[1]!r} is not a job id")
    return parts[0], parts[1], check_name(parts[2])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def artifact_files(src: Path) -> list[tuple[str, Path]]:
    """The regular files under ``src`` (relative path, absolute path), sorted; links and our own manifest skipped."""
    out = []
    for p in sorted(src.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != MANIFEST_FILE:
            out.append((p.relative_to(src).as_posix(), p))
    return out


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=1)


def decode_manifest(data: bytes, expected_sha256: str | None = None, where: str = "") -> Manifest:
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ArtifactError(
            f"manifest of {where} has sha256 {hashlib.sha256(data).hexdigest()}, the job record says "
            f"{expected_sha256}: the artifact was changed after it was stored; refusing it"
        )
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ArtifactError(f"manifest of {where} is not valid: {exc}") from None
    check_name(manifest.name)
    for f in manifest.files:
        check_relpath(f.path)
    return manifest
