"""Output files appear whole or not at all: a failed run never leaves a truncated result."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[TextIO]:
    """Write to a hidden temporary file beside `path`; rename it over `path` only on success."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open(mode) as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
