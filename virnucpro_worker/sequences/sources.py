"""What `predict` accepts as input: a path, an open text or binary stream, or (id, sequence)
pairs. Every kind goes through the same record checks (fasta.checked_record)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeAlias

from .fasta import NO_LIMITS, FastaRecord, InputLimits, read_fasta, read_pairs, read_text

Source: TypeAlias = str | os.PathLike | io.IOBase | BinaryIO | Iterable[tuple[str, str]]


def records_of(source: Source, limits: InputLimits = NO_LIMITS) -> Iterator[FastaRecord]:
    """The checked records of `source`; a `str` is a path (FASTA text goes in a stream)."""
    if isinstance(source, str | os.PathLike):
        return read_fasta(Path(source), limits)
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        return read_text(source, getattr(source, "name", "<stream>"), limits)
    return read_pairs(source, limits=limits)


def source_path(source: Source) -> Path | None:
    """The file behind `source`, when there is one."""
    if isinstance(source, str | os.PathLike):
        return Path(source)
    return None
