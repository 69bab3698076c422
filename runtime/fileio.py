"""Local file helpers every layer shares: a file's SHA-256 and the atomic write.

A leaf module: it imports nothing from `runtime`, so the engine, the worker, the service contract
(`runtime.common`) and the CLI may all use it without depending on one another.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK_BYTES = 8 * 1024 * 1024  # read size for hashing: large files (weights) without the memory


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so a multi-GB weight file never sits in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` for the block to write; renamed over `path` when the block
    ends, deleted when it raises. Readers see the old file or the whole new one, never a half
    file, even if the process dies mid-write. Creates `path`'s directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        temporary = Path(f.name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (see `atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
