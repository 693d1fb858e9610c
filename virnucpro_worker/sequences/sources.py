"""What `predict` accepts as input: a path, an open text or binary stream, or (id, sequence)
pairs. Every kind goes through the same record checks (fasta.checked_record)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeAlias

from ..errors import InputError
from .fasta import NO_LIMITS, FastaRecord, InputLimits, read_fasta, read_pairs, read_text

Source: TypeAlias = str | os.PathLike | io.IOBase | BinaryIO | Iterable[tuple[str, str]]


SOURCE_KINDS = (
    "`source` is a FASTA/FASTQ file's path, an open stream of FASTA/FASTQ text, or (id, "
    "sequence) pairs: a bare sequence goes in as [('my_id', 'ACGT...')], FASTA text as "
    "io.StringIO(text)"
)


def records_of(source: Source, limits: InputLimits = NO_LIMITS) -> Iterator[FastaRecord]:
    """The checked records of `source`; a `str` is a path (FASTA text goes in a stream)."""
    if isinstance(source, str | os.PathLike):
        if not _is_there(Path(source)):
            raise InputError(f"{_short(str(source))}: no such file; {SOURCE_KINDS}")
        return read_fasta(Path(source), limits)
    if isinstance(source, io.IOBase) or hasattr(source, "read"):
        return read_text(source, getattr(source, "name", "<stream>"), limits)
    if isinstance(source, bytes | bytearray) or not isinstance(source, Iterable):
        raise InputError(f"a {type(source).__name__} is not a source: {SOURCE_KINDS}")
    return read_pairs(_pairs(source), limits=limits)


def _pairs(items: Iterable[object]) -> Iterator[tuple[str, str]]:
    for number, item in enumerate(items, start=1):
        if not (isinstance(item, tuple | list) and len(item) == 2 and all(map(_is_str, item))):
            raise InputError(
                f"<records>: record {number} is a {type(item).__name__} {_short(repr(item))}, "
                f"not an (id, sequence) pair of strings; {SOURCE_KINDS}"
            )
        yield item[0], item[1]


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_there(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a sequence passed as a path: the name is too long
        return False


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:37]}..."


def source_path(source: Source) -> Path | None:
    """The file behind `source`, when there is one."""
    if isinstance(source, str | os.PathLike):
        return Path(source)
    return None
