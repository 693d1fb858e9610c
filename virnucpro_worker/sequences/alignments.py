"""Unaligned BAM and CRAM input (the `bam` extra: pysam): the reads as FASTA text, for the FASTA
reader to cut into blocks and check like any other input.

Reads are named as `samtools fastq` names them: the BAM's read name, with /1 and /2 appended
to the first and second reads of a pair (they share a name in the BAM). Each read is taken in
its sequencing orientation (a read stored reverse-complemented is turned back); secondary and
supplementary records repeat a read, and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError

BAM_MAGIC = b"BAM\x01"  # after BGZF (gzip) decompression
CRAM_MAGIC = b"CRAM"


def is_alignment_file(start: bytes) -> bool:
    """Whether the (decompressed) start of an input is a BAM or CRAM file's."""
    return start.startswith((BAM_MAGIC, CRAM_MAGIC))


def reads_as_fasta(path: Path, size: int) -> Iterator[bytes]:
    """The file's reads as FASTA text, in pieces of about `size` bytes."""
    try:
        import pysam
    except ImportError:
        raise InputError(
            f"{path}: BAM/CRAM input needs pysam: pip install 'virnucpro-worker[bam]'"
        ) from None
    piece: list[bytes] = []
    length = reads = 0
    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as alignments:
            for read in alignments.fetch(until_eof=True):
                if read.is_secondary or read.is_supplementary:
                    continue
                entry = f">{_read_name(read)}\n{read.get_forward_sequence() or ''}\n".encode()
                piece.append(entry)
                length += len(entry)
                reads += 1
                if length >= size:
                    yield b"".join(piece)
                    piece, length = [], 0
    except (OSError, ValueError) as error:  # what pysam raises for a damaged file
        raise InputError(f"{path}: not a readable BAM/CRAM file ({error})") from None
    if not reads:
        raise InputError(f"{path}: a BAM/CRAM file without reads")
    yield b"".join(piece)


def _read_name(read) -> str:  # a pysam.AlignedSegment
    if read.is_paired and read.is_read1:
        return f"{read.query_name}/1"
    if read.is_paired and read.is_read2:
        return f"{read.query_name}/2"
    return read.query_name
