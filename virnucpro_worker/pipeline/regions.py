"""Viral regions: runs of viral chunks along a record, merged into base coordinates.

The rule (docs/ALGORITHM.md 10): a region starts and ends at a viral chunk; two viral chunks
belong to the same region when at most `max_gap` chunks (non-viral or unscored) lie between
them; a region is kept when it holds at least `min_chunks` viral chunks. Its bases are the
union of its chunks' real windows (sequences.chunking.chunk_starts), so overlapping windows
give the coordinates the classifier actually saw.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..sequences.chunking import chunk_starts


class ScoredChunk(Protocol):
    """What the rule reads of a chunk's call: a `ChunkCall` of results.py, which uses this
    module to find the regions of the calls it makes."""

    chunk: int  # 1-based along its record
    is_virus: bool
    max_virus_score: float


@dataclass(frozen=True)
class RegionRule:
    """When runs of viral chunks make a region (defaults justified in docs/ALGORITHM.md 10)."""

    min_chunks: int = 2  # viral chunks a region must hold
    max_gap: int = 1  # non-viral or unscored chunks that may lie between two viral ones

    def __post_init__(self) -> None:
        if self.min_chunks < 1 or self.max_gap < 0:
            raise ValueError(
                f"a region rule needs min_chunks >= 1 and max_gap >= 0, not {self.to_json()}"
            )

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RegionRule:
        """`None` (a job queued before regions existed) gives the default rule."""
        return cls(**data) if data else cls()


@dataclass(slots=True)
class ViralRegion:
    """Chunks `first_chunk`..`last_chunk` of a record, bases [start, end) (0-based)."""

    record: int  # ordinal of the record in the input, from 0
    record_id: str
    number: int  # 1-based among the record's regions
    first_chunk: int
    last_chunk: int
    start: int
    end: int
    viral_chunks: int
    scored_chunks: int  # viral plus bridged non-viral chunks (unscored ones have no score)
    mean_virus_score: float  # mean over the scored chunks of their max P(virus), float32
    max_virus_score: float  # float32
    record_length: int

    @property
    def id(self) -> str:
        return f"{self.record_id}_region_{self.number}"

    @property
    def chunks(self) -> int:
        return self.last_chunk - self.first_chunk + 1

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def record_fraction(self) -> float:
        """The region's share of its record's bases."""
        return self.length / self.record_length


def record_regions(
    record: int,
    record_id: str,
    length: int,
    calls: Sequence[ScoredChunk],
    chunk_size: int,
    rule: RegionRule,
) -> list[ViralRegion]:
    """The regions of one record from its scored chunks' calls (in chunk order)."""
    viral = [call.chunk for call in calls if call.is_virus]
    runs: list[list[int]] = []
    for chunk in viral:
        if runs and chunk - runs[-1][-1] - 1 <= rule.max_gap:
            runs[-1].append(chunk)
        else:
            runs.append([chunk])
    kept = [run for run in runs if len(run) >= rule.min_chunks]
    if not kept:
        return []
    starts = chunk_starts(length, chunk_size)
    regions = []
    for number, run in enumerate(kept, start=1):
        first, last = run[0], run[-1]
        scores = [call.max_virus_score for call in calls if first <= call.chunk <= last]
        regions.append(
            ViralRegion(
                record=record,
                record_id=record_id,
                number=number,
                first_chunk=first,
                last_chunk=last,
                start=starts[first - 1],
                end=min(starts[last - 1] + chunk_size, length),
                viral_chunks=len(run),
                scored_chunks=len(scores),
                mean_virus_score=_float32(math.fsum(scores) / len(scores)),
                max_virus_score=max(scores),
                record_length=length,
            )
        )
    return regions


def _float32(value: float) -> float:
    """`value` rounded to float32, as the database's REAL keeps it."""
    return struct.unpack("f", struct.pack("f", value))[0]
