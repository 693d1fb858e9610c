"""The original tool's chunking: overlapping fixed-size windows that cover the whole record."""

from __future__ import annotations

import math
from typing import NamedTuple

CHUNK_SIZES = (300, 500)


def chunk_id(record_id: str, number: int) -> str:
    """The original's chunk name, `<record id>_chunk_<n>` (n from 1); its `Modified_ID`."""
    return f"{record_id}_chunk_{number}"


class Chunk(NamedTuple):
    record_id: str
    number: int  # 1-based position among the record's chunks
    start: int  # 0-based offset in the record
    sequence: str

    @property
    def id(self) -> str:
        return chunk_id(self.record_id, self.number)


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
    """The record's chunks in order, letter case kept."""
    return [
        Chunk(record_id, number, start, sequence[start : start + size])
        for number, start in enumerate(chunk_starts(len(sequence), size), start=1)
    ]
