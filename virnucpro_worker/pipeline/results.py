"""Predictions as data: one row type per level (kept frame, chunk, input record) and the
results of one block of whole records, which is what the prediction stream yields.

Keys are structured (record ordinal, chunk number, strand, frame): nothing downstream parses
`contig7_chunk_3R2` back apart; the original's text ids are derived from the keys when needed.

These dataclasses declare the columns: the database stores each row type a column per field,
by name (store/results.py), and `sequence_summary.tsv` is RecordSummary's fields in order
(pipeline/outputs.py), so a new field goes last.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..sequences.chunking import chunk_id
from ..sequences.prepare import PreparedBlock, RecordInfo
from ..sequences.translation import KeptFrame, frame_id
from .calls import VIRUS, chunk_is_virus, chunk_maxima, frame_label, record_call
from .regions import RegionRule, ViralRegion, record_regions


@dataclass(slots=True)  # not frozen: frozen ones take five times longer to build
class FrameScore:
    """One kept frame's scores. Scores are float32 values (held in Python floats exactly)."""

    record: int  # ordinal of the record in the input, from 0
    record_id: str
    chunk: int  # the chunk's number in its record, from 1
    strand: str  # "F" or "R"
    frame: int  # 1..3
    others_score: float  # the original's score1: P(others)
    virus_score: float  # the original's score2: P(virus)
    label: str  # calls.frame_label

    @property
    def id(self) -> str:
        """The original's Sequence_ID, e.g. `contig7_chunk_3R2`."""
        return frame_id(self.record_id, self.chunk, self.strand, self.frame)

    @property
    def chunk_id(self) -> str:
        return chunk_id(self.record_id, self.chunk)


@dataclass(slots=True)
class ChunkCall:
    """A chunk with at least one kept frame, and the original's call on it."""

    record: int
    record_id: str
    chunk: int
    kept_frames: int
    max_others_score: float
    max_virus_score: float
    is_virus: bool  # calls.chunk_is_virus

    @property
    def id(self) -> str:
        """The original's Modified_ID, e.g. `contig7_chunk_3`."""
        return chunk_id(self.record_id, self.chunk)


@dataclass(slots=True)
class RecordSummary:
    """One input record: its size, what was scored, and our call (calls.record_call). The
    fields, in order, are sequence_summary.tsv's columns (but `index` and `viral_chunks`)."""

    index: int  # ordinal in the input, from 0
    id: str
    length: int
    chunks: int
    kept_frames: int
    scored_chunks: int  # chunks with at least one kept frame
    viral_chunks: int
    max_virus_score: float | None  # None when no frame was kept
    viral_chunk_fraction: float | None  # viral_chunks / scored_chunks, None when unscored
    call: str  # "virus", "others" or "unscored"
    viral_regions: int = 0  # regions.record_regions of the record


@dataclass(slots=True)
class BlockResult:
    """The results for one block of whole input records, in input order.

    `viral_sequences` (record ordinal -> sequence of each record called virus) are there for
    the viral FASTA, `prepared` (the chunks and kept frames with their sequences) for the
    intermediate files, when the block was just computed.
    """

    records: list[RecordSummary]
    chunks: list[ChunkCall]  # scored chunks, in input order
    frames: list[FrameScore]  # kept frames, in input order (chunk, then F1..R3)
    regions: list[ViralRegion] = field(default_factory=list)  # in input order
    viral_sequences: dict[int, str] | None = None
    prepared: PreparedBlock | None = None
    dropped_codons: int = 0  # codons with N or another IUPAC letter, skipped in kept frames
    rna_records: int = 0  # written with U, read as T
    stage_seconds: dict[str, float] = field(default_factory=dict)


def frame_scores(
    frames: Sequence[KeptFrame], scores: np.ndarray, ordinals: dict[str, int]
) -> list[FrameScore]:
    """`scores[i]` = (P(others), P(virus)) of `frames[i]`, float32."""
    if scores.shape != (len(frames), 2):
        raise ValueError(f"scores must be [{len(frames)}, 2], not {list(scores.shape)}")
    stray = next((kept for kept in frames if kept.record_id not in ordinals), None)
    if stray is not None:
        raise ValueError(f"frame {stray.id} belongs to no record of its block")
    return [
        FrameScore(
            ordinals[kept.record_id],
            kept.record_id,
            kept.chunk,
            kept.strand,
            kept.frame,
            others,
            virus,
            frame_label(others, virus),
        )
        for kept, (others, virus) in zip(frames, scores.astype(np.float32).tolist(), strict=True)
    ]


def chunk_calls(frames: Sequence[FrameScore]) -> list[ChunkCall]:
    """One call per chunk from its kept frames (consecutive in `frames`)."""
    calls = []
    for (record, chunk), group in itertools.groupby(frames, lambda f: (f.record, f.chunk)):
        group = list(group)
        max_others, max_virus = chunk_maxima((f.others_score, f.virus_score) for f in group)
        viral = chunk_is_virus(max_others, max_virus)
        first = group[0]
        calls.append(
            ChunkCall(record, first.record_id, chunk, len(group), max_others, max_virus, viral)
        )
    return calls


def record_summaries(
    records: Sequence[RecordInfo], first_index: int, chunks: Sequence[ChunkCall]
) -> list[RecordSummary]:
    by_record: dict[int, list[ChunkCall]] = {}
    for call in chunks:
        by_record.setdefault(call.record, []).append(call)
    return [
        record_summary(first_index + offset, info, by_record.get(first_index + offset, []))
        for offset, info in enumerate(records)
    ]


def record_summary(index: int, info: RecordInfo, chunks: Sequence[ChunkCall]) -> RecordSummary:
    scored = len(chunks)
    viral = sum(call.is_virus for call in chunks)
    return RecordSummary(
        index=index,
        id=info.id,
        length=info.length,
        chunks=info.chunks,
        kept_frames=sum(call.kept_frames for call in chunks),
        scored_chunks=scored,
        viral_chunks=viral,
        max_virus_score=max((call.max_virus_score for call in chunks), default=None),
        viral_chunk_fraction=viral / scored if scored else None,
        call=record_call(scored, viral),
    )


def block_regions(
    records: Sequence[RecordSummary],
    chunks: Sequence[ChunkCall],
    chunk_size: int,
    rule: RegionRule,
) -> list[ViralRegion]:
    """The viral regions of a block's records; sets each record's `viral_regions` count."""
    by_record: dict[int, list[ChunkCall]] = {}
    for call in chunks:
        by_record.setdefault(call.record, []).append(call)
    regions = []
    for record in records:
        found = record_regions(
            record.index,
            record.id,
            record.length,
            by_record.get(record.index, []),
            chunk_size,
            rule,
        )
        record.viral_regions = len(found)
        regions += found
    return regions


def block_result(
    prepared: PreparedBlock,
    scores: np.ndarray,
    first_index: int,
    chunk_size: int,
    rule: RegionRule = RegionRule(),  # noqa: B008 (frozen, so one shared default is safe)
) -> BlockResult:
    """Apply the call rules and the region rule to one prepared block and its frames' scores."""
    ordinals = {info.id: first_index + offset for offset, info in enumerate(prepared.records)}
    frames = frame_scores(prepared.frames, scores, ordinals)
    chunks = chunk_calls(frames)
    records = record_summaries(prepared.records, first_index, chunks)
    return BlockResult(
        records=records,
        chunks=chunks,
        frames=frames,
        regions=block_regions(records, chunks, chunk_size, rule),
        viral_sequences={
            record.index: sequence
            for record, sequence in zip(records, prepared.sequences, strict=True)
            if record.call == VIRUS
        },
        prepared=prepared,
        dropped_codons=sum(kept.dropped_codons for kept in prepared.frames),
        rna_records=prepared.rna_records,
    )


@dataclass
class RunTotals:
    """What a run's block results add up to: the counts and stage timings of run.json."""

    records: int = 0
    bases: int = 0
    chunks: int = 0
    kept_frames: int = 0
    scored_chunks: int = 0
    viral_chunks: int = 0
    viral_records: int = 0
    viral_regions: int = 0
    rna_records: int = 0
    dropped_codons: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, block: BlockResult) -> None:
        self.records += len(block.records)
        self.bases += sum(record.length for record in block.records)
        self.chunks += sum(record.chunks for record in block.records)
        self.kept_frames += len(block.frames)
        self.scored_chunks += len(block.chunks)
        self.viral_chunks += sum(call.is_virus for call in block.chunks)
        self.viral_records += sum(record.call == VIRUS for record in block.records)
        self.viral_regions += len(block.regions)
        self.rna_records += block.rna_records
        self.dropped_codons += block.dropped_codons
        self.add_seconds(block.stage_seconds)

    def add_seconds(self, seconds: dict[str, float]) -> None:
        for stage, value in seconds.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + value

    def counts(self) -> dict[str, int]:
        return {
            "records": self.records,
            "bases": self.bases,
            "chunks": self.chunks,
            "kept_frames": self.kept_frames,
            "scored_chunks": self.scored_chunks,
            "viral_chunks": self.viral_chunks,
            "viral_records": self.viral_records,
            "viral_regions": self.viral_regions,
            "rna_records": self.rna_records,
            "dropped_codons": self.dropped_codons,
        }
