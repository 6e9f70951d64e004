"""A job's checkpoints and final model, stored where any client can pull them.

- :mod:`.manifest`: names, URIs, the manifest (files, sizes, sha256).
- :mod:`.backends`: the bytes, in the NATS object store or a directory, streamed in 1 MiB blocks.
- :mod:`.store`: :class:`ArtifactStore` (put, pull with verification and resume, delete, list).
- :mod:`.jobs`: what the client does with a job's artifacts (list, pull, prune).
- :mod:`.progress`: the terminal progress bar.

No torch here: the node agent stores, anyone pulls. See docs/artifacts.md.
"""

from trl_nats.artifacts.backends import TamperedArtifact
from trl_nats.artifacts.manifest import (
    FINAL,
    MANIFEST_FILE,
    ArtifactError,
    ArtifactInfo,
    Manifest,
    ManifestFile,
    artifact_name,
)
from trl_nats.artifacts.store import ArtifactStore, PullResult, StoredArtifact, TransferProgress

__all__ = [
    "FINAL",
    "MANIFEST_FILE",
    "ArtifactError",
    "ArtifactInfo",
    "ArtifactStore",
    "Manifest",
    "ManifestFile",
    "PullResult",
    "StoredArtifact",
    "TamperedArtifact",
    "TransferProgress",
    "artifact_name",
]
