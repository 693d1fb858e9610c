"""Six-frame translation and the original's frame selection, vectorised over many chunks.

Rules (REFERENCE 1.2): upper-case; only the 64 ACGT codons translate, any other codon is dropped;
a frame is kept iff its translation is non-empty and has no stop; its nucleotide slice is the
translated span plus one base. Doing this with numpy over a whole block of chunks at once is what
makes preparation fast: the per-chunk Python work is only building the kept frames' strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .chunking import Chunk

FRAME_NAMES = ("F1", "F2", "F3", "R1", "R2", "R3")
_BASES = "TCAG"
# Standard genetic code, codons enumerated in TCAG order (index 16*b1 + 4*b2 + b3).
_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_INVALID = 64  # codon index of any codon with a letter outside ACGT

_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _code, _base in enumerate(_BASES):
    _BASE_CODE[ord(_base)] = _code
_AMINO_ACID_BYTES = np.frombuffer((_AMINO_ACIDS + "X").encode(), dtype=np.uint8)
_IS_STOP = np.frombuffer((_AMINO_ACIDS + "X").encode(), dtype=np.uint8) == ord("*")
_COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


@dataclass(frozen=True, slots=True)
class KeptFrame:
    id: str  # chunk id + F1..R3, e.g. contig7_chunk_3R2
    record_id: str
    nucleotide: str
    protein: str


def reverse_complement(sequence: str) -> str:
    """Complement ACGT/acgt only (other letters are kept), then reverse: the original's rule."""
    return sequence.translate(_COMPLEMENT)[::-1]


def _codon_indices(strand: str) -> np.ndarray:
    """Codon index (0-63, or 64 for non-ACGT) starting at each position; last two are invalid."""
    codes = _BASE_CODE[np.frombuffer(strand.encode("ascii"), dtype=np.uint8)]
    indices = np.full(len(codes), _INVALID, dtype=np.int64)
    if len(codes) >= 3:
        first, second, third = codes[:-2], codes[1:-1], codes[2:]
        valid = (first < 4) & (second < 4) & (third < 4)
        indices[:-2] = np.where(valid, first * 16 + second * 4 + third, _INVALID)
    return indices


def _phase_counts(flags: np.ndarray) -> np.ndarray:
    """table[k, p] = how many flagged positions among p, p+3, ..., p+3(k-1)."""
    padded = np.zeros(-(-len(flags) // 3) * 3, dtype=np.int64)
    padded[: len(flags)] = flags
    table = np.zeros((len(padded) // 3 + 1, 3), dtype=np.int64)
    np.cumsum(padded.reshape(-1, 3), axis=0, out=table[1:])
    return table


def kept_frames(chunks: Sequence[Chunk], record_ids: Sequence[str]) -> list[KeptFrame]:
    """The kept frames of `chunks` (record_ids[i] owns chunks[i]), in chunk then F1..R3 order."""
    if not chunks:
        return []
    forward = "".join(chunk.sequence for chunk in chunks).upper()
    reverse = reverse_complement(forward)
    total = len(forward)
    lengths = np.fromiter((len(chunk.sequence) for chunk in chunks), np.int64, len(chunks))
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))

    # Both strands in one buffer: forward at [0, total), reverse at [total, 2*total).
    codons = np.concatenate((_codon_indices(forward), _codon_indices(reverse)))
    frame_shift = np.array([0, 1, 2, 0, 1, 2])
    strand_start = np.stack([offsets] * 3 + [total + (total - offsets - lengths)] * 3, axis=1)
    starts = strand_start + frame_shift  # first codon position of each (chunk, frame)
    counts = np.maximum(0, (lengths[:, None] - frame_shift) // 3)  # codon positions per frame

    stops = _phase_counts(_IS_STOP[codons])
    valid = _phase_counts(codons != _INVALID)
    phase, row = starts % 3, starts // 3
    stop_count = stops[row + counts, phase] - stops[row, phase]
    valid_count = valid[row + counts, phase] - valid[row, phase]
    keep = (valid_count > 0) & (stop_count == 0)
    if not keep.any():
        return []
    return _build_frames(
        chunks,
        record_ids,
        forward + reverse,
        codons,
        lengths,
        strand_start,
        keep,
        starts,
        counts,
        valid_count,
    )


def _build_frames(
    chunks: Sequence[Chunk],
    record_ids: Sequence[str],
    strands: str,
    codons: np.ndarray,
    lengths: np.ndarray,
    strand_start: np.ndarray,
    keep: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    valid_count: np.ndarray,
) -> list[KeptFrame]:
    chunk_index, frame_index = np.nonzero(keep)  # row-major: chunk order, then F1..R3
    kept_starts, kept_counts = starts[keep], counts[keep]
    # Every codon position of every kept frame, gathered at once.
    first_of_frame = np.repeat(np.cumsum(kept_counts) - kept_counts, kept_counts)
    positions = np.repeat(kept_starts, kept_counts) + 3 * (
        np.arange(kept_counts.sum()) - first_of_frame
    )
    translated = codons[positions]
    letters = _AMINO_ACID_BYTES[translated[translated != _INVALID]].tobytes().decode()
    protein_lengths = valid_count[keep]
    protein_ends = np.cumsum(protein_lengths)
    chunk_ends = (strand_start[chunk_index, frame_index] + lengths[chunk_index]).tolist()

    frames = []
    for i, (chunk_i, frame_i, start, end, size) in enumerate(
        zip(
            chunk_index.tolist(),
            frame_index.tolist(),
            kept_starts.tolist(),
            protein_ends.tolist(),
            protein_lengths.tolist(),
            strict=True,
        )
    ):
        chunk = chunks[chunk_i]
        frames.append(
            KeptFrame(
                id=chunk.id + FRAME_NAMES[frame_i],
                record_id=record_ids[chunk_i],
                nucleotide=strands[start : min(start + 3 * size + 1, chunk_ends[i])],
                protein=letters[end - size : end],
            )
        )
    return frames
