"""Prediction rows in and out of the database.

A block of results goes in as one transaction that first deletes whatever rows its records
already have: writing a shard twice (a retry, a duplicate delivery) leaves one row per frame.
Read back in input order, the rows are the `BlockResult`s the prediction stream gave, so the
same writer turns them into the same files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from sqlalchemy import Connection, delete, select

from ..pipeline.embeddings import EmbeddingPart
from ..pipeline.regions import ViralRegion
from ..pipeline.results import BlockResult, ChunkCall, FrameScore, RecordSummary
from .bulk import insert_rows
from .models import (
    ChunkPrediction,
    EmbeddingRows,
    FramePrediction,
    RecordPrediction,
    RegionPrediction,
)

FRAMES = FramePrediction.__table__
CHUNKS = ChunkPrediction.__table__
RECORDS = RecordPrediction.__table__
REGIONS = RegionPrediction.__table__
EMBEDDINGS = EmbeddingRows.__table__


def write_block(
    connection: Connection,
    job_id: int,
    block: BlockResult,
    embeddings: Sequence[EmbeddingPart] = (),
) -> None:
    """Replace the rows of the block's records with the block's, and its frames' features
    with `embeddings` (the caller commits)."""
    if not block.records:
        return
    first, last = block.records[0].index, block.records[-1].index
    for table in (FRAMES, CHUNKS, RECORDS, REGIONS, EMBEDDINGS):
        connection.execute(
            delete(table).where(
                table.c.job_id == job_id, table.c.record >= first, table.c.record <= last
            )
        )
    insert_rows(connection, FRAMES, _frame_rows(job_id, block.frames))
    insert_rows(connection, CHUNKS, _chunk_rows(job_id, block.chunks))
    insert_rows(connection, RECORDS, _record_rows(job_id, block.records))
    insert_rows(connection, REGIONS, _region_rows(job_id, block.regions))
    if embeddings:  # a few large rows: a plain insert
        rows = [
            {"job_id": job_id, "record": first, "part": number, "rows": part.rows}
            | {"dnabert_s": part.dnabert_s, "esm2": part.esm2}
            for number, part in enumerate(embeddings)
        ]
        connection.execute(EMBEDDINGS.insert(), rows)


def read_embeddings(connection: Connection, job_id: int) -> Iterator[EmbeddingPart]:
    """The job's features in the order of its frames, a part at a time."""
    columns = (EMBEDDINGS.c.rows, EMBEDDINGS.c.dnabert_s, EMBEDDINGS.c.esm2)
    query = (
        select(*columns)
        .where(EMBEDDINGS.c.job_id == job_id)
        .order_by(EMBEDDINGS.c.record, EMBEDDINGS.c.part)
    )
    for rows, dnabert_s, esm2 in connection.execution_options(yield_per=8).execute(query):
        yield EmbeddingPart(rows, bytes(dnabert_s), bytes(esm2))


def _frame_rows(job_id: int, frames: list[FrameScore]) -> Iterator[tuple]:
    for f in frames:
        yield job_id, f.record, f.chunk, f.strand, f.frame, f.others_score, f.virus_score, f.label


def _chunk_rows(job_id: int, chunks: list[ChunkCall]) -> Iterator[tuple]:
    for c in chunks:
        yield (
            job_id,
            c.record,
            c.chunk,
            c.kept_frames,
            c.max_others_score,
            c.max_virus_score,
            c.is_virus,
        )


def _record_rows(job_id: int, records: list[RecordSummary]) -> Iterator[tuple]:
    for r in records:
        yield (
            job_id,
            r.index,
            r.id,
            r.length,
            r.chunks,
            r.kept_frames,
            r.scored_chunks,
            r.viral_chunks,
            r.max_virus_score,
            r.viral_chunk_fraction,
            r.call,
        )


def _region_rows(job_id: int, regions: list[ViralRegion]) -> Iterator[tuple]:
    for r in regions:
        yield (
            job_id,
            r.record,
            r.number,
            r.first_chunk,
            r.last_chunk,
            r.start,
            r.end,
            r.viral_chunks,
            r.scored_chunks,
            r.mean_virus_score,
            r.max_virus_score,
        )


def read_blocks(
    connection: Connection, job_id: int, records_per_block: int = 20_000
) -> Iterator[BlockResult]:
    """The job's results in input order, `records_per_block` records at a time (four
    streamed queries, merged by record ordinal; memory holds one block)."""
    records = _stream(connection, RECORDS, job_id)
    chunks = _Peekable(_stream(connection, CHUNKS, job_id))
    frames = _Peekable(_stream(connection, FRAMES, job_id))
    regions = _Peekable(_stream(connection, REGIONS, job_id))
    while batch := list(itertools.islice(records, records_per_block)):
        summaries = _records(batch)
        by_index = {record.index: record for record in summaries}
        found = _regions(list(regions.take_through(batch[-1][1])), by_index)
        for region in found:
            by_index[region.record].viral_regions += 1
        ids = {record.index: record.id for record in summaries}
        yield BlockResult(
            records=summaries,
            chunks=_chunks(list(chunks.take_through(batch[-1][1])), ids),
            frames=_frames(list(frames.take_through(batch[-1][1])), ids),
            regions=found,
        )


def _stream(connection: Connection, table, job_id: int) -> Iterator[tuple]:
    """The job's rows of `table` as tuples in the table's column order, sorted by key."""
    order = [column for column in table.primary_key.columns if column.name != "job_id"]
    query = select(table).where(table.c.job_id == job_id).order_by(*order)
    options = {"stream_results": True, "yield_per": 10_000}
    return iter(connection.execution_options(**options).execute(query))


class _Peekable:
    """Rows sorted by record ordinal (their second column), taken a record range at a time."""

    def __init__(self, rows: Iterator[tuple]) -> None:
        self.rows, self.next = rows, next(rows, None)

    def take_through(self, last_record: int) -> Iterator[tuple]:
        while self.next is not None and self.next[1] <= last_record:
            row, self.next = self.next, next(self.rows, None)
            yield row


def _float32(values) -> list:
    """REAL columns as the float32 values they hold (PostgreSQL sends REAL as its shortest
    decimal text, which read as a double is not the float32 itself)."""
    return np.array(values, dtype=np.float64).astype(np.float32).tolist()


def _frames(rows: list[tuple], record_ids: dict[int, str]) -> list[FrameScore]:
    if not rows:
        return []
    _, record, chunk, strand, frame, others, virus, label = zip(*rows, strict=True)
    ids = map(record_ids.__getitem__, record)
    columns = (record, ids, chunk, strand, frame, _float32(others), _float32(virus), label)
    return list(map(FrameScore, *columns))


def _chunks(rows: list[tuple], record_ids: dict[int, str]) -> list[ChunkCall]:
    if not rows:
        return []
    _, record, chunk, kept, others, virus, viral = zip(*rows, strict=True)
    ids = map(record_ids.__getitem__, record)
    viral = map(bool, viral)
    return list(map(ChunkCall, record, ids, chunk, kept, _float32(others), _float32(virus), viral))


def _records(rows: list[tuple]) -> list[RecordSummary]:
    _, index, record_id, length, chunks, kept, scored, viral, best, fraction, call = zip(
        *rows, strict=True
    )
    scores = iter(_float32([score for score in best if score is not None]))
    best = [None if score is None else next(scores) for score in best]
    columns = (index, record_id, length, chunks, kept, scored, viral, best, fraction, call)
    return list(map(RecordSummary, *columns))


def _regions(rows: list[tuple], records: dict[int, RecordSummary]) -> list[ViralRegion]:
    if not rows:
        return []
    _, record, number, first, last, start, end, viral, scored, mean, best = zip(*rows, strict=True)
    ids = [records[index].id for index in record]
    lengths = [records[index].length for index in record]
    columns = (record, ids, number, first, last, start, end, viral, scored)
    return list(map(ViralRegion, *columns, _float32(mean), _float32(best), lengths))
