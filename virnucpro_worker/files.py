"""Output files appear whole or not at all: a failed run never leaves a truncated result."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a hidden temporary file beside `path`; rename it over `path` only on success.
    Text is UTF-8, with any non-UTF-8 bytes of record ids written back as they came."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    temporary = Path(name)
    text = {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape"}
    try:
        with open(descriptor, mode, **text) as handle:
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
