"""The original tool's chunking: overlapping fixed-size windows that cover the whole record."""

from __future__ import annotations

import math
from typing import NamedTuple

CHUNK_SIZES = (300, 500)


class Chunk(NamedTuple):
    id: str
    start: int  # 0-based offset in the record
    sequence: str


def chunk_starts(length: int, size: int) -> list[int]:
    """Start offsets of the chunks of a record, exactly as the original computes them.

    The overlap needed to cover `length` with ceil(length / size) windows is spread over the
    chunks; the original's arithmetic (kept verbatim, including its quirks) can leave the last
    chunk shorter than `size`.
    """
    count = math.ceil(length / size)
    overlap = count * size - length
    low = int(overlap / count)
    need = overlap - low * (count - 1)
    shifts = [low + 1] * need + [low] * (count - 1 - need) + [0]
    starts = []
    moved = 0
    for offset, shift in zip(range(0, length, size), shifts, strict=False):
        starts.append(offset - moved if offset > 1 else offset)
        moved += shift
    return starts


def chunk_record(record_id: str, sequence: str, size: int) -> list[Chunk]:
    """Chunks `<id>_chunk_<n>` (n from 1), letter case kept."""
    return [
        Chunk(f"{record_id}_chunk_{number}", start, sequence[start : start + size])
        for number, start in enumerate(chunk_starts(len(sequence), size), start=1)
    ]
