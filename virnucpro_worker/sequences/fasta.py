"""Streaming, validating FASTA reader (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
import itertools
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from Bio.SeqIO.FastaIO import SimpleFastaParser

from ..errors import InputError

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas")
# IUPAC nucleotide codes (U included); anything else, e.g. protein letters, is rejected.
_NOT_NUCLEOTIDE = re.compile(r"[^ACGTURYSWKMBDHVNacgturyswkmbdhvn]")


@dataclass(frozen=True, slots=True)
class FastaRecord:
    id: str
    sequence: str


def fasta_stem(path: Path) -> str:
    """`sample.fa.gz` -> `sample`: the stem the original tool names its outputs after."""
    name = path.name
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in FASTA_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _open_text(path: Path) -> TextIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="ascii", errors="replace", newline=None)
    return path.open("r", encoding="ascii", errors="replace", newline=None)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            first = handle.read(1)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    if not first:
        raise InputError(f"{path}: the file is empty")


def _parse(path: Path) -> Iterator[tuple[str, str]]:
    """(header, sequence) pairs; decoding and format errors become InputError."""
    try:
        with _open_text(path) as handle:
            lines = iter(handle)
            first = next((line for line in lines if line.strip()), "")
            if not first.startswith(">"):
                raise InputError(f"{path}: not FASTA, the first line does not start with '>'")
            yield from SimpleFastaParser(itertools.chain([first], lines))
    except (gzip.BadGzipFile, zlib.error, EOFError) as error:
        raise InputError(f"{path}: corrupt gzip data ({error})") from None


def read_fasta(path: Path | str) -> Iterator[FastaRecord]:
    """Yield validated records one at a time.

    Accepts Windows line endings, blank lines and descriptions after the id (dropped, as the
    original's Biopython record.id does). Duplicate detection keeps the set of ids seen, the only
    state that grows with the input.
    """
    path = Path(path)
    _check_readable(path)
    seen: set[str] = set()
    for count, (header, sequence) in enumerate(_parse(path), start=1):
        record_id = header.split(maxsplit=1)[0] if header.strip() else ""
        where = f"{path}: record {count} ('{record_id}')"
        if not record_id:
            raise InputError(f"{path}: record {count} has an empty header")
        if not sequence:
            raise InputError(f"{where}: empty sequence")
        if record_id in seen:
            raise InputError(f"{where}: duplicate record id")
        bad = _NOT_NUCLEOTIDE.search(sequence)
        if bad:
            raise InputError(
                f"{where}: '{bad.group()}' at position {bad.start() + 1} is not a nucleotide "
                "or IUPAC code (is this a protein FASTA?)"
            )
        seen.add(record_id)
        yield FastaRecord(record_id, sequence)
