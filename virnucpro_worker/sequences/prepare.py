"""`prepare`: FASTA -> the original's chunk file and kept-frame files, streamed in blocks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import UserError
from ..files import atomic_write
from .chunking import CHUNK_SIZES, Chunk, chunk_record
from .fasta import FastaRecord, fasta_stem, read_fasta
from .translation import KeptFrame, kept_frames

log = logging.getLogger(__name__)

# Bases handled per vectorised block: large enough to amortise numpy calls, small enough
# that memory stays flat whatever the input size.
BLOCK_BASES = 2_000_000
WRAP = 60  # Biopython's FASTA line width, used by the original for the chunk file


@dataclass(frozen=True, slots=True)
class RecordInfo:
    id: str
    length: int
    chunks: int


@dataclass(slots=True)
class PreparedBlock:
    records: list[RecordInfo] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    frames: list[KeptFrame] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PreparedFiles:
    chunks: Path
    nucleotide: Path
    protein: Path

    @classmethod
    def in_dir(cls, out_dir: Path, stem: str, chunk_size: int) -> PreparedFiles:
        return cls(
            chunks=out_dir / f"{stem}_chunked{chunk_size}.fa",
            nucleotide=out_dir / f"{stem}_identified_nucleotide.fa",
            protein=out_dir / f"{stem}_identified_protein.faa",
        )


@dataclass(frozen=True, slots=True)
class PrepareSummary:
    files: PreparedFiles
    records: int
    bases: int
    chunks: int
    frames: int


def check_chunk_size(chunk_size: int) -> None:
    if chunk_size not in CHUNK_SIZES:
        raise UserError(f"chunk size must be one of {CHUNK_SIZES}, not {chunk_size}")


def prepared_blocks(
    records: Iterable[FastaRecord], chunk_size: int, block_bases: int = BLOCK_BASES
) -> Iterator[PreparedBlock]:
    """Group records into blocks of about `block_bases` and compute their chunks and frames."""
    check_chunk_size(chunk_size)
    block, record_ids, bases = PreparedBlock(), [], 0
    for record in records:
        chunks = list(chunk_record(record.id, record.sequence, chunk_size))
        block.records.append(RecordInfo(record.id, len(record.sequence), len(chunks)))
        block.chunks.extend(chunks)
        record_ids.extend([record.id] * len(chunks))
        bases += len(record.sequence)
        if bases >= block_bases:
            block.frames = kept_frames(block.chunks, record_ids)
            yield block
            block, record_ids, bases = PreparedBlock(), [], 0
    if block.records:
        block.frames = kept_frames(block.chunks, record_ids)
        yield block


def write_chunks(handle: TextIO, chunks: Iterable[Chunk]) -> None:
    for chunk in chunks:
        seq = chunk.sequence
        lines = "\n".join(seq[i : i + WRAP] for i in range(0, len(seq), WRAP))
        handle.write(f">{chunk.id}\n{lines}\n")


def write_frames(nucleotide: TextIO, protein: TextIO, frames: Iterable[KeptFrame]) -> None:
    for frame in frames:
        nucleotide.write(f">{frame.id}\n{frame.nucleotide}\n")
        protein.write(f">{frame.id}\n{frame.protein}\n")


def prepare(input_path: Path | str, chunk_size: int, out_dir: Path | str) -> PrepareSummary:
    """Write the three files the original tool writes for `input_path`, byte for byte."""
    input_path, out_dir = Path(input_path), Path(out_dir)
    check_chunk_size(chunk_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = PreparedFiles.in_dir(out_dir, fasta_stem(input_path), chunk_size)
    records = bases = chunks = frames = 0
    with (
        atomic_write(files.chunks) as chunk_out,
        atomic_write(files.nucleotide) as nucleotide_out,
        atomic_write(files.protein) as protein_out,
    ):
        for block in prepared_blocks(read_fasta(input_path), chunk_size):
            write_chunks(chunk_out, block.chunks)
            write_frames(nucleotide_out, protein_out, block.frames)
            records += len(block.records)
            bases += sum(info.length for info in block.records)
            chunks += len(block.chunks)
            frames += len(block.frames)
    if frames == 0:
        log.warning("%s: no stop-free frame in any chunk; the frame files are empty", input_path)
    return PrepareSummary(files, records, bases, chunks, frames)
