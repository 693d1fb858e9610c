"""Six-frame translation and the original's frame selection, vectorised over many chunks.

Rules (docs/ALGORITHM.md 4): upper-case; only the 64 ACGT codons translate, any other codon is
dropped; a frame is kept iff its translation is non-empty and has no stop; its nucleotide slice
is the translated span plus one base.

Speed comes from doing the per-base work once per block of chunks with numpy: every window of
three bases gets one code, looked up in two tables (the codon, and its reverse complement, so the
reverse strand needs no second pass); stops are counted per frame with one `reduceat` per reading
phase. Python touches only the stop-free frames (those left empty, all codons untranslatable,
are dropped there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .chunking import Chunk, chunk_id

FRAME_NAMES = ("F1", "F2", "F3", "R1", "R2", "R3")
_STRANDS = "FFFRRR"
_BASES = "TCAG"  # standard-code order: codon index 16*b1 + 4*b2 + b3
_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_OTHER = 4  # base code of any letter outside ACGT: its codons are dropped
_STOP = ord("*")
_COMPLEMENT_BYTES = bytes.maketrans(b"ACGTacgt", b"TGCAtgca")


def _base_codes() -> np.ndarray:
    codes = np.full(256, _OTHER, dtype=np.uint8)
    for code, base in enumerate(_BASES):
        codes[ord(base)] = codes[ord(base.lower())] = code
    return codes


def _window_tables() -> tuple[np.ndarray, np.ndarray]:
    """Amino-acid byte (0 = dropped) of each window code 25*b1 + 5*b2 + b3, read forward and
    read as its reverse complement. Complement in TCAG order is `code ^ 2` (T<->A, C<->G)."""
    forward = np.zeros(125, dtype=np.uint8)
    reverse = np.zeros(125, dtype=np.uint8)
    for b1 in range(4):
        for b2 in range(4):
            for b3 in range(4):
                window = 25 * b1 + 5 * b2 + b3
                forward[window] = ord(_AMINO_ACIDS[16 * b1 + 4 * b2 + b3])
                reverse[window] = ord(_AMINO_ACIDS[16 * (b3 ^ 2) + 4 * (b2 ^ 2) + (b1 ^ 2)])
    return forward, reverse


_BASE_CODES = _base_codes()
_FORWARD_TABLE, _REVERSE_TABLE = _window_tables()


def frame_id(record_id: str, chunk: int, strand: str, frame: int) -> str:
    """The original's kept-frame name: chunk id + F1..F3 (forward) or R1..R3 (reverse
    complement), no separator, e.g. `contig7_chunk_3R2`."""
    return f"{chunk_id(record_id, chunk)}{strand}{frame}"


class KeptFrame(NamedTuple):
    record_id: str
    chunk: int  # the chunk's number in its record, from 1
    strand: str  # "F": the chunk as given, "R": its reverse complement
    frame: int  # 1..3: translation starts at offset frame - 1 of the strand
    nucleotide: str  # the translated span plus one base (the original's slice)
    protein: str
    dropped_codons: int  # codons with a letter other than ACGT, skipped as the original does

    @property
    def id(self) -> str:
        return frame_id(self.record_id, self.chunk, self.strand, self.frame)


def _window_amino_acids(strand: str) -> tuple[np.ndarray, np.ndarray]:
    """Amino acid of the window starting at each position, forward and reverse-complement read
    (0 where dropped, and for the last two positions)."""
    codes = np.take(_BASE_CODES, np.frombuffer(strand.encode("ascii"), dtype=np.uint8))
    windows = np.zeros(len(codes), dtype=np.uint8)
    if len(codes) >= 3:
        window = windows[:-2]
        np.multiply(codes[:-2], 25, out=window)
        window += codes[1:-1] * np.uint8(5)
        window += codes[2:]
    forward, reverse = np.take(_FORWARD_TABLE, windows), np.take(_REVERSE_TABLE, windows)
    forward[-2:] = reverse[-2:] = 0
    return forward, reverse


def _count(flags: np.ndarray, first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Flags set among first, first+3, ..., first+3(count-1), for each (first, count >= 1).

    One `reduceat` per reading phase over [begin, end) index pairs: the odd slots it also fills
    (from one frame's end to the next one's begin) are dropped. Ten times faster than running
    sums, which made this the slowest step of preparation.
    """
    totals = np.zeros(first.shape, dtype=np.int64)
    phase = first % 3
    for p in range(3):
        frames = phase == p
        if not frames.any():
            continue
        along_phase = np.append(flags[p::3], False)  # so that an end may equal the length
        begin = first[frames] // 3
        bounds = np.column_stack([begin, begin + count[frames]]).ravel()
        totals[frames] = np.add.reduceat(along_phase, bounds, dtype=np.int64)[::2]
    return totals


def kept_frames(chunks: Sequence[Chunk]) -> list[KeptFrame]:
    """The kept frames of `chunks`, in chunk then F1..R3 order."""
    if not chunks:
        return []
    strand = "".join(chunk.sequence for chunk in chunks)
    forward, reverse = _window_amino_acids(strand)
    lengths = np.fromiter((len(chunk.sequence) for chunk in chunks), np.int64, len(chunks))
    starts = np.cumsum(lengths) - lengths

    # Frame f reads windows f, f+3, ... of the chunk (forward) or of its reverse complement,
    # whose window j is the forward window at start+length-3-j; `first` is the lowest window.
    shift = np.arange(3)
    windows = np.maximum(0, (lengths[:, None] - shift) // 3)
    forward_first = starts[:, None] + shift
    reverse_first = starts[:, None] + lengths[:, None] - 3 - shift - 3 * (windows - 1)
    windows = np.concatenate([windows, windows], axis=1)
    first = np.where(windows > 0, np.concatenate([forward_first, reverse_first], axis=1), 0)
    stops = np.concatenate(
        [
            _count(forward == _STOP, first[:, :3], windows[:, :3]),
            _count(reverse == _STOP, first[:, 3:], windows[:, 3:]),
        ],
        axis=1,
    )
    stop_free = (stops == 0) & (windows > 0)
    if not stop_free.any():
        return []
    return _build_frames(
        chunks, strand, forward, reverse, stop_free, first, windows, starts, lengths
    )


def _build_frames(
    chunks, strand, forward, reverse, stop_free, first, windows, starts, lengths
) -> list[KeptFrame]:
    chunk_index, frame_index = np.nonzero(stop_free)  # row-major: chunk order, then F1..R3
    count = windows[stop_free]
    is_reverse = frame_index >= 3
    # Gather every window of every stop-free frame; reverse frames are read from their highest
    # window down, in the reverse-complement table (which follows the forward one).
    origin = np.where(
        is_reverse, first[stop_free] + 3 * (count - 1) + len(strand), first[stop_free]
    )
    step = np.where(is_reverse, -3, 3)
    frame_start = np.cumsum(count) - count
    offset_in_frame = np.arange(count.sum()) - np.repeat(frame_start, count)
    positions = np.repeat(origin, count) + np.repeat(step, count) * offset_in_frame
    amino_acids = np.concatenate([forward, reverse])[positions]
    translated = amino_acids != 0
    letters = amino_acids[translated].tobytes().decode("ascii")
    protein_length = np.add.reduceat(translated, frame_start, dtype=np.int64)
    protein_end = np.cumsum(protein_length)

    # Nucleotide slices: strand[f : f + 3*len(protein) + 1], clipped at the chunk's end, taken
    # from the block read forward or (reverse frames) from the whole block reverse-complemented.
    upper = strand.encode("ascii").upper()
    both = (upper + upper.translate(_COMPLEMENT_BYTES)[::-1]).decode("ascii")
    chunk_start = np.where(
        is_reverse,
        2 * len(strand) - starts[chunk_index] - lengths[chunk_index],
        starts[chunk_index],
    )
    shift = frame_index % 3
    slice_start = chunk_start + shift
    slice_end = chunk_start + np.minimum(shift + 3 * protein_length + 1, lengths[chunk_index])
    dropped = count - protein_length
    return [
        KeptFrame(
            chunks[c].record_id,
            chunks[c].number,
            _STRANDS[f],
            f % 3 + 1,
            both[a:b],
            letters[end - size : end],
            skipped,
        )
        for c, f, a, b, size, end, skipped in zip(
            chunk_index.tolist(),
            frame_index.tolist(),
            slice_start.tolist(),
            slice_end.tolist(),
            protein_length.tolist(),
            protein_end.tolist(),
            dropped.tolist(),
            strict=True,
        )
        if size  # a frame of only untranslatable codons is empty: not kept
    ]
