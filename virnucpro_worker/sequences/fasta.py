"""Reading sequences, every record checked: FASTA or FASTQ (qualities ignored), plain or
compressed (gzip, bzip2, xz: recognised by content, not by name), from a file or from Python;
unaligned BAM or CRAM with the `bam` extra (alignments.py).

Records are read in large binary blocks cut at record boundaries (several times faster than a
line-by-line parser such as Biopython's, which dominated preparation time); FASTQ is turned
into FASTA text block by block, so both share one parser. Tolerated, as the original's
Biopython reader tolerates them: blank lines, CRLF and classic-Mac CR line ends, a UTF-8 BOM,
descriptions after the id (dropped, as Biopython's record.id does).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ..errors import InputError
from .alignments import is_alignment_file, reads_as_fasta

FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".fq", ".fastq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
_READ_SIZE = 1 << 22
_BOM = b"\xef\xbb\xbf"
# IUPAC nucleotide codes, U included (read as T); anything else, e.g. protein letters, is refused.
_NUCLEOTIDE_CODES = b"ACGTURYSWKMBDHVNacgturyswkmbdhvn"
_NOT_NUCLEOTIDE = re.compile(rb"[^" + _NUCLEOTIDE_CODES + rb"]")
_U_AS_T = bytes.maketrans(b"Uu", b"Tt")
_COMPRESSED: dict[bytes, tuple[str, Callable[[BinaryIO], BinaryIO]]] = {
    # Each is closed by raw_blocks' `with`.
    b"\x1f\x8b": ("gzip", lambda raw: gzip.GzipFile(fileobj=raw)),
    b"BZh": ("bzip2", lambda raw: bz2.BZ2File(raw)),
    b"\xfd7zXZ\x00": ("xz", lambda raw: lzma.LZMAFile(raw)),  # noqa: SIM115
}
_REFUSED_CONTAINERS = {b"PK\x03\x04": "a zip archive", b"(\xb5/\xfd": "zstd-compressed data"}
_DECOMPRESSION_ERRORS = (gzip.BadGzipFile, zlib.error, EOFError, OSError, lzma.LZMAError)


class FastaRecord(NamedTuple):
    id: str
    sequence: str
    rna: bool = False  # written with U: read as T


@dataclass(frozen=True)
class InputLimits:
    """What a site accepts (settings `max_input_bytes`, `max_record_length`); None: no limit."""

    max_bytes: int | None = None
    max_record_length: int | None = None


NO_LIMITS = InputLimits()


@dataclass(frozen=True, slots=True)
class RawBlock:
    """Whole records of the input as FASTA text, starting at a '>' line."""

    text: bytes
    first_record: int  # 1-based number of its first record in the input


def fasta_stem(path: Path) -> str:
    """`sample.fa.gz` -> `sample`: the stem the original tool names its outputs after."""
    name = path.name
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    for suffix in FASTA_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def check_input_file(path: Path, limits: InputLimits = NO_LIMITS) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    if size == 0:
        raise InputError(f"{path}: the file is empty")
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise InputError(
            f"{path}: {size:,} bytes, over this site's limit of {limits.max_bytes:,} "
            "(setting max_input_bytes)"
        )


def _decompressed(raw: BinaryIO, path: Path) -> tuple[BinaryIO, str | None]:
    """The stream to read `raw` through, and the compression's name (None: plain)."""
    head = raw.peek(8)[:8]
    for magic, (name, opener) in _COMPRESSED.items():
        if head.startswith(magic):
            return opener(raw), name
    for magic, what in _REFUSED_CONTAINERS.items():
        if head.startswith(magic):
            raise InputError(f"{path}: {what}, not FASTA or FASTQ (decompress it first)")
    return raw, None


def _what_it_looks_like(start: bytes) -> str:
    if b"\x00" in start or sum(byte < 9 or 13 < byte < 32 for byte in start) > len(start) // 10:
        return "binary data"
    line = start.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return f"text whose first line is {line[:40]!r}"


def raw_blocks(
    path: Path | str, size: int = _READ_SIZE, limits: InputLimits = NO_LIMITS
) -> Iterator[RawBlock]:
    """The file's records as FASTA text, cut at record boundaries into blocks of about `size`
    bytes. Checks the file's format; records are checked by `parse_block`."""
    path = Path(path)
    check_input_file(path, limits)
    compression = None
    try:
        with path.open("rb") as raw:
            handle, compression = _decompressed(raw, path)
            with handle:  # closing a decompressor leaves `raw` open: both are closed
                yield from _format_blocks(handle, path, size)
    except _DECOMPRESSION_ERRORS as error:
        if compression is None:
            raise
        raise InputError(f"{path}: corrupt or truncated {compression} data ({error})") from None


def _format_blocks(handle: BinaryIO, path: Path, size: int) -> Iterator[RawBlock]:
    start = handle.read(size)
    start = start.removeprefix(_BOM).lstrip()
    while not start:  # only whitespace so far
        piece = handle.read(size)
        if not piece:
            raise InputError(f"{path}: no records, only blank space")
        start = piece.lstrip()
    if is_alignment_file(start):
        yield from _fasta_blocks(reads_as_fasta(path, size))
        return
    pieces = _line_ends_as_newlines(start, handle, size)
    if start.startswith(b">"):
        yield from _fasta_blocks(pieces)
    elif start.startswith(b"@"):
        yield from _fastq_blocks(pieces, path)
    else:
        raise InputError(f"{path}: not FASTA or FASTQ: {_what_it_looks_like(start[:512])}")


def _line_ends_as_newlines(start: bytes, handle: BinaryIO, size: int) -> Iterator[bytes]:
    """The pieces of the input; in a file with CR line ends only (classic Mac), CR -> LF."""
    classic_mac = b"\n" not in start and b"\r" in start
    yield start.replace(b"\r", b"\n") if classic_mac else start
    while piece := handle.read(size):
        yield piece.replace(b"\r", b"\n") if classic_mac else piece


def _fasta_blocks(pieces: Iterator[bytes]) -> Iterator[RawBlock]:
    pending, number = bytearray(), 1
    for piece in pieces:
        searched = max(0, len(pending) - 1)  # only new bytes: linear in record length
        pending += piece
        cut = pending.rfind(b"\n>", searched)
        if cut >= 0:
            block = RawBlock(bytes(pending[: cut + 1]), number)
            number += block.text.count(b"\n>") + 1
            del pending[: cut + 1]
            yield block
    yield RawBlock(bytes(pending), number)


def _fastq_blocks(pieces: Iterator[bytes], path: Path) -> Iterator[RawBlock]:
    """Four-line FASTQ records (header, sequence, '+', qualities) as FASTA text."""
    pending, number = b"", 1
    for piece in pieces:
        lines = (pending + piece).split(b"\n")
        complete = (len(lines) - 1) // 4 * 4  # the last line may be cut
        pending = b"\n".join(lines[complete:])
        if complete:
            yield RawBlock(_fastq_as_fasta(lines[:complete], number, path), number)
            number += complete // 4
    rest = pending.rstrip(b"\r\n\t ")
    if not rest:
        return
    lines = rest.split(b"\n")
    if len(lines) % 4:
        where = f"{path}: FASTQ record {number + len(lines) // 4}"
        raise InputError(f"{where}: truncated (a record has four lines: @id, sequence, +, quality)")
    yield RawBlock(_fastq_as_fasta(lines, number, path), number)


def _fastq_as_fasta(lines: list[bytes], first: int, path: Path) -> bytes:
    headers, sequences, separators, qualities = lines[0::4], lines[1::4], lines[2::4], lines[3::4]
    out = []
    for number, (header, sequence, separator, quality) in enumerate(
        zip(headers, sequences, separators, qualities, strict=True), start=first
    ):
        sequence, quality = sequence.rstrip(b"\r"), quality.rstrip(b"\r")
        if not header.startswith(b"@") or not separator.startswith(b"+"):
            raise InputError(
                f"{path}: FASTQ record {number}: expected '@id', sequence, '+', qualities "
                "(one line each; multi-line FASTQ is not read)"
            )
        if len(quality) != len(sequence):
            raise InputError(
                f"{path}: FASTQ record {number} ({header[:40].decode('utf-8', 'replace')!r}): "
                f"{len(quality)} quality values for {len(sequence)} bases"
            )
        out += (b">", header[1:], b"\n", sequence, b"\n")
    return b"".join(out)


def parse_block(
    block: RawBlock, source: Path | str, limits: InputLimits = NO_LIMITS
) -> list[FastaRecord]:
    """The block's records, each checked (`checked_record`). Duplicate ids span blocks:
    `UniqueIds` checks them."""
    records = []
    for number, entry in enumerate(block.text[1:].split(b"\n>"), start=block.first_record):
        header, _, body = entry.partition(b"\n")
        # Line breaks, blank lines, CR of Windows line endings and spaces are not sequence.
        records.append(
            checked_record(header, body.translate(None, b"\r\n \t"), number, source, limits)
        )
    return records


def checked_record(
    header: bytes, sequence: bytes, number: int, source: Path | str, limits: InputLimits
) -> FastaRecord:
    """One record: an id (the header up to the first whitespace, as Biopython's record.id),
    UTF-8 without control characters; a non-empty sequence of IUPAC letters, U read as T."""
    fields = header.split(maxsplit=1)  # ASCII whitespace, as Biopython's record.id
    if not fields:
        raise InputError(f"{source}: record {number} has an empty header")
    record_id = _record_id(fields[0], number, source)
    where = f"{source}: record {number} ('{record_id}')"
    if not sequence:
        raise InputError(f"{where}: empty sequence")
    if limits.max_record_length is not None and len(sequence) > limits.max_record_length:
        raise InputError(
            f"{where}: {len(sequence):,} bases, over this site's limit of "
            f"{limits.max_record_length:,} (setting max_record_length)"
        )
    if sequence.translate(None, _NUCLEOTIDE_CODES):  # C speed; the regex only to report
        bad = _NOT_NUCLEOTIDE.search(sequence)
        raise InputError(
            f"{where}: {bad.group().decode('latin-1')!r} at position {bad.start() + 1} is "
            "not a nucleotide or IUPAC code (is this a protein FASTA?)"
        )
    rna = b"U" in sequence or b"u" in sequence
    if rna:
        sequence = sequence.translate(_U_AS_T)
    return FastaRecord(record_id, sequence.decode("ascii"), rna)


def _record_id(raw: bytes, number: int, source: Path | str) -> str:
    try:
        record_id = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{source}: record {number}: the header is not UTF-8 text "
            f"(byte 0x{raw[error.start]:02x} at position {error.start + 1})"
        ) from None
    bad = next((c for c in record_id if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise InputError(
            f"{source}: record {number}: the id {record_id!r} holds a control character "
            f"(U+{ord(bad):04X}), which would corrupt the tab-separated and FASTA outputs"
        )
    return record_id


class UniqueIds:
    """Refuses a record id seen before; the set of ids is the only state that grows with the
    input."""

    def __init__(self, source: Path | str) -> None:
        self.source = source
        self.seen: set[str] = set()

    def add(self, ids: Sequence[str], first_record: int) -> None:
        for number, record_id in enumerate(ids, start=first_record):
            if record_id in self.seen:
                raise InputError(
                    f"{self.source}: record {number} ('{record_id}'): duplicate record id"
                )
            self.seen.add(record_id)


def read_fasta(path: Path | str, limits: InputLimits = NO_LIMITS) -> Iterator[FastaRecord]:
    """Yield the file's checked records (FASTA or FASTQ), streamed block by block."""
    path = Path(path)
    unique = UniqueIds(path)
    for block in raw_blocks(path, limits=limits):
        records = parse_block(block, path, limits)
        unique.add([record.id for record in records], block.first_record)
        yield from records


def read_text(
    handle: io.TextIOBase | BinaryIO, name: str = "<stream>", limits: InputLimits = NO_LIMITS
) -> Iterator[FastaRecord]:
    """Yield the checked records of an open text or binary stream of FASTA or FASTQ."""

    def pieces() -> Iterator[bytes]:
        while piece := handle.read(_READ_SIZE):
            yield piece.encode("utf-8") if isinstance(piece, str) else piece

    return read_pieces(pieces(), name, limits)


def read_pieces(
    pieces: Iterable[bytes], name: str, limits: InputLimits = NO_LIMITS
) -> Iterator[FastaRecord]:
    """Yield the checked records of FASTA or FASTQ text arriving as byte strings."""
    unique = UniqueIds(name)
    for block in _format_blocks(_BytesReader(iter(pieces)), Path(name), _READ_SIZE):
        records = parse_block(block, name, limits)
        unique.add([record.id for record in records], block.first_record)
        yield from records


def read_pairs(
    pairs: Iterable[tuple[str, str]], name: str = "<records>", limits: InputLimits = NO_LIMITS
) -> Iterator[FastaRecord]:
    """Yield `(id, sequence)` pairs as records, checked by the same rules as a file's."""
    unique = UniqueIds(name)
    for number, (record_id, sequence) in enumerate(pairs, start=1):
        if not sequence.isascii():
            position, letter = next((i, c) for i, c in enumerate(sequence) if not c.isascii())
            raise InputError(
                f"{name}: record {number} ('{record_id}'): {letter!r} at position "
                f"{position + 1} is not a nucleotide or IUPAC code"
            )
        header = record_id.encode("utf-8", "surrogateescape")
        record = checked_record(header, sequence.encode("ascii"), number, name, limits)
        if record.id != record_id:
            raise InputError(f"{name}: record {number}: the id {record_id!r} holds whitespace")
        unique.add([record.id], number)
        yield record
    if not unique.seen:  # the same rule as for an empty file
        raise InputError(f"{name}: no records")


class _BytesReader(io.RawIOBase):
    """`read(n)` over an iterator of byte strings."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces, self.buffer = pieces, b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            piece = next(self.pieces, None)
            if piece is None:
                break
            self.buffer += piece
        out, self.buffer = (
            (self.buffer, b"") if size < 0 else (self.buffer[:size], self.buffer[size:])
        )
        return out
