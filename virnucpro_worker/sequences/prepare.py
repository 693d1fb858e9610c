"""`prepare`: FASTA -> the original's chunk file and kept-frame files, streamed in blocks."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import multiprocessing
import operator
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import UserError
from ..files import atomic_write, check_writable_folder
from .chunking import CHUNK_SIZES, Chunk, chunk_record
from .fasta import (
    NO_LIMITS,
    FastaRecord,
    InputLimits,
    RawBlock,
    UniqueIds,
    fasta_stem,
    parse_block,
    raw_blocks,
)
from .translation import KeptFrame, kept_frames

log = logging.getLogger(__name__)

# Bases handled per vectorised block: large enough to amortise numpy calls, small enough
# that memory stays flat whatever the input size.
BLOCK_BASES = 2_000_000
# Bytes of FASTA per block when `prepare` spreads blocks over processes: small enough that
# every worker gets several blocks of a 20 Mbp file.
PARALLEL_BLOCK_BYTES = 1 << 18
WRAP = 60  # Biopython's FASTA line width, used by the original for the chunk file


class RecordInfo(NamedTuple):
    id: str
    length: int
    chunks: int


@dataclass(slots=True)
class PreparedBlock:
    records: list[RecordInfo] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)  # sequences[i] is records[i]'s
    chunks: list[Chunk] = field(default_factory=list)
    frames: list[KeptFrame] = field(default_factory=list)
    rna_records: int = 0  # written with U, read as T


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
    rna_records: int  # written with U, read as T
    dropped_codons: int  # in kept frames: codons with N or another IUPAC letter


def check_chunk_size(chunk_size: int) -> None:
    """One of CHUNK_SIZES, as an int (`"500"` is refused, its quotes shown)."""
    if type(chunk_size) is not int or chunk_size not in CHUNK_SIZES:
        raise UserError(f"chunk size must be one of {CHUNK_SIZES} (an int), not {chunk_size!r}")


def record_batches(
    records: Iterable[FastaRecord], block_bases: int = BLOCK_BASES
) -> Iterator[list[FastaRecord]]:
    """Consecutive records grouped until they hold at least `block_bases` bases."""
    batch, bases = [], 0
    for record in records:
        batch.append(record)
        bases += len(record.sequence)
        if bases >= block_bases:
            yield batch
            batch, bases = [], 0
    if batch:
        yield batch


def prepare_block(records: Sequence[FastaRecord], chunk_size: int) -> PreparedBlock:
    """Chunks and kept frames of whole records, computed together for speed (at most
    BLOCK_BASES of chunks at a time, so that one huge record does not multiply memory)."""
    block = PreparedBlock()
    for record in records:
        chunks = chunk_record(record.id, record.sequence, chunk_size)
        block.records.append(RecordInfo(record.id, len(record.sequence), len(chunks)))
        block.sequences.append(record.sequence)
        block.chunks.extend(chunks)
        block.rna_records += record.rna
    step = BLOCK_BASES // chunk_size
    for start in range(0, len(block.chunks), step):
        block.frames.extend(kept_frames(block.chunks[start : start + step]))
    return block


def prepared_blocks(
    records: Iterable[FastaRecord], chunk_size: int, block_bases: int = BLOCK_BASES
) -> Iterator[PreparedBlock]:
    """Records in blocks of about `block_bases`, with their chunks and kept frames."""
    check_chunk_size(chunk_size)
    for batch in record_batches(records, block_bases):
        yield prepare_block(batch, chunk_size)


@functools.cache
def _line_slices(length: int) -> Callable[[str], tuple[str, ...]]:
    """Cuts a sequence of `length` into its 60-column lines in one call: most chunks share a
    length, and this is the chunk file's hot loop. The trailing empty slice makes the result
    a tuple even for a single line."""
    lines = (slice(i, i + WRAP) for i in range(0, length, WRAP))
    return operator.itemgetter(*lines, slice(0, 0))


def wrapped(sequence: str) -> str:
    """`sequence` in 60-column lines, as Biopython writes FASTA."""
    return "\n".join(_line_slices(len(sequence))(sequence)[:-1])


def chunk_text(chunks: Iterable[Chunk]) -> str:
    """Chunks as the original writes them (Biopython FASTA: `>id` and 60-column lines)."""
    return "".join([f">{chunk.id}\n{wrapped(chunk.sequence)}\n" for chunk in chunks])


def frame_texts(frames: Sequence[KeptFrame]) -> tuple[str, str]:
    """The nucleotide and protein frame files' text: one unwrapped line per sequence."""
    nucleotide = "".join([f">{frame.id}\n{frame.nucleotide}\n" for frame in frames])
    protein = "".join([f">{frame.id}\n{frame.protein}\n" for frame in frames])
    return nucleotide, protein


@dataclass(frozen=True, slots=True)
class _BlockOutput:
    """Encoded by the worker: bytes cross the process boundary without re-encoding."""

    chunks: bytes
    nucleotide: bytes
    protein: bytes
    counts: tuple[int, ...]  # as PrepareSummary's, in its order
    record_ids: list[str]
    first_record: int


def _block_output(raw: RawBlock, path: Path, chunk_size: int, limits: InputLimits) -> _BlockOutput:
    """Parse, check and prepare a block of the file; runs in a worker process when asked to."""
    records = parse_block(raw, path, limits)
    block = prepare_block(records, chunk_size)
    counts = (
        len(block.records),
        sum(info.length for info in block.records),
        len(block.chunks),
        len(block.frames),
        sum(record.rna for record in records),
        sum(frame.dropped_codons for frame in block.frames),
    )
    ids = [info.id for info in block.records]
    nucleotide, protein = frame_texts(block.frames)
    return _BlockOutput(
        chunk_text(block.chunks).encode(),
        nucleotide.encode(),
        protein.encode(),
        counts,
        ids,
        raw.first_record,
    )


def _in_order(pool: Executor, work: Callable, items: Iterable, ahead: int) -> Iterator:
    """work(item) for each item, run in `pool` at most `ahead` at a time, results in order
    (unlike Pool.imap, the input is never read further ahead, so memory stays bounded)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _block_outputs(
    path: Path, chunk_size: int, workers: int, limits: InputLimits
) -> Iterator[_BlockOutput]:
    """Each raw block of the file prepared, in order; duplicate ids are checked here, across
    blocks, as the outputs come back."""
    work = functools.partial(_block_output, path=path, chunk_size=chunk_size, limits=limits)
    unique = UniqueIds(path)
    if sys.platform != "linux" or threading.active_count() > 1:
        workers = 1  # forking is only safe from a single-threaded process on Linux
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            outputs = map(work, raw_blocks(path, limits=limits))
        else:
            # fork: workers start in milliseconds.
            context = multiprocessing.get_context("fork")
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
            blocks = raw_blocks(path, PARALLEL_BLOCK_BYTES, limits)
            outputs = _in_order(pool, work, blocks, ahead=4 * workers)
        for output in outputs:
            unique.add(output.record_ids, output.first_record)
            yield output


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def prepare(
    input_path: Path | str,
    chunk_size: int,
    out_dir: Path | str,
    workers: int = 1,
    limits: InputLimits = NO_LIMITS,
) -> PrepareSummary:
    """Write the three files the original tool writes for `input_path`, byte for byte.

    With `workers` > 1, blocks are prepared in that many forked processes while this one reads
    the input and writes the output in order (on Linux, from a process without other threads;
    otherwise in this process).
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    check_chunk_size(chunk_size)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    files = PreparedFiles.in_dir(out_dir, fasta_stem(input_path), chunk_size)
    totals = [0] * 6
    outputs = _block_outputs(input_path, chunk_size, workers, limits)
    first = next(outputs)  # input errors surface before any output directory is created
    check_writable_folder(out_dir)
    with (
        atomic_write(files.chunks, "wb") as chunk_out,
        atomic_write(files.nucleotide, "wb") as nucleotide_out,
        atomic_write(files.protein, "wb") as protein_out,
    ):
        for output in itertools.chain([first], outputs):
            chunk_out.write(output.chunks)
            nucleotide_out.write(output.nucleotide)
            protein_out.write(output.protein)
            totals = [a + b for a, b in zip(totals, output.counts, strict=True)]
    summary = PrepareSummary(files, *totals)
    if summary.frames == 0:
        log.warning("%s: no stop-free frame in any chunk; the frame files are empty", input_path)
    return summary
