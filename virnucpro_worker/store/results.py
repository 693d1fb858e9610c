"""Prediction rows in and out of the database.

Each prediction table stores one row type of `pipeline.results`: a column per field, under the
field's name (`job_id` aside, and for a record its ordinal `index` is `record`, its `id` is
`record_id`); the fields a row takes from its record (its id, its length) are not stored.
Rows go in and come out by column name, so a column's place in its table (a migration
appends, the model may declare it mid-table) changes nothing. A field without a column, or a
column without a field, stops the import with a message naming it.

A block of results goes in as one transaction that first deletes whatever rows its records
already have: writing a shard twice (a retry, a duplicate delivery) leaves one row per frame.
Read back in input order, the rows are the `BlockResult`s the prediction stream gave, so the
same writer turns them into the same files.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
from sqlalchemy import REAL, Boolean, Column, Connection, Row, Select, Table, delete, select

from ..pipeline.embeddings import EmbeddingPart
from ..pipeline.regions import ViralRegion
from ..pipeline.results import BlockResult, ChunkCall, FrameScore, RecordSummary
from .bulk import insert_rows
from .models import (
    Base,
    ChunkPrediction,
    EmbeddingRows,
    FramePrediction,
    RecordPrediction,
    RegionPrediction,
)


class StoredRows:
    """How one table stores one row type: the field each column holds."""

    def __init__(
        self,
        model: type[Base],
        row_type: type,
        not_stored: Sequence[str],
        renamed: dict[str, str] | None = None,
    ) -> None:
        """`not_stored`: the fields a row read back gets elsewhere (from its record, or
        counted); `renamed`: column -> field, where the two names differ."""
        self.table: Table = model.__table__
        self.row_type = row_type
        self.columns = tuple(c.name for c in self.table.columns if c.name != "job_id")
        self.fields = tuple((renamed or {}).get(name, name) for name in self.columns)
        self.not_stored = tuple(not_stored)
        declared = [field.name for field in dataclasses.fields(row_type)]
        stray = [c for c, f in zip(self.columns, self.fields, strict=True) if f not in declared]
        unstored = set(declared) - set(self.fields) - set(self.not_stored)
        if stray or unstored:
            raise TypeError(
                f"table {self.table.name} and {row_type.__name__} disagree: columns without "
                f"a field {stray}, fields without a column {sorted(unstored)}"
            )
        self.record_position = self.columns.index("record")
        self.tuples = _tuples(self.fields)
        self._readers = [_reader(self.table.c[name]) for name in self.columns]

    def write(self, connection: Connection, job_id: int, items: Sequence[Any]) -> None:
        columns = ("job_id", *self.columns)
        insert_rows(connection, self.table, columns, self.tuples(job_id, items))

    def query(self, job_id: int) -> Select:
        """The job's rows: `columns` in this order, sorted by key."""
        key = [column for column in self.table.primary_key.columns if column.name != "job_id"]
        columns = [self.table.c[name] for name in self.columns]
        return select(*columns).where(self.table.c.job_id == job_id).order_by(*key)

    def read(self, rows: Sequence[Row], **not_stored: Sequence[Any]) -> list:
        """Row objects from `query`'s rows and the values of the fields not stored."""
        if not rows:
            return []
        values = dict(not_stored)
        for field, reader, column in zip(
            self.fields, self._readers, zip(*rows, strict=True), strict=True
        ):
            values[field] = reader(column)
        arguments = (values[field.name] for field in dataclasses.fields(self.row_type))
        return list(map(self.row_type, *arguments))


def _tuples(fields: Sequence[str]) -> Callable[[int, Sequence[Any]], Iterator[tuple]]:
    """`tuples(job_id, items)`: the row `(job_id, item.<field>, ...)` of each item. Built
    column-wise, a `map` of one attribute read per field zipped together: all of it runs in C,
    as fast as hand-written tuples (a metagenome has tens of millions of frames)."""
    getters = [attrgetter(name) for name in fields]

    def tuples(job_id: int, items: Sequence[Any]) -> Iterator[tuple]:
        columns = (map(getter, items) for getter in getters)
        return zip(itertools.repeat(job_id, len(items)), *columns, strict=True)

    return tuples


def _reader(column: Column) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """How a column's values read back: REAL ones as the float32 values they hold
    (PostgreSQL sends REAL as its shortest decimal text, which read as a double is not the
    float32 itself), booleans as bools."""
    if isinstance(column.type, REAL):
        return _float32_or_none if column.nullable else _float32
    if isinstance(column.type, Boolean):
        return lambda values: list(map(bool, values))
    return lambda values: values


def _float32(values: Sequence[float]) -> list[float]:
    return np.array(values, dtype=np.float64).astype(np.float32).tolist()


def _float32_or_none(values: Sequence[float | None]) -> list[float | None]:
    scores = iter(_float32([value for value in values if value is not None]))
    return [None if value is None else next(scores) for value in values]


FRAMES = StoredRows(FramePrediction, FrameScore, not_stored=["record_id"])
CHUNKS = StoredRows(ChunkPrediction, ChunkCall, not_stored=["record_id"])
RECORDS = StoredRows(
    RecordPrediction,
    RecordSummary,
    not_stored=["viral_regions"],  # counted from the record's regions
    renamed={"record": "index", "record_id": "id"},
)
REGIONS = StoredRows(RegionPrediction, ViralRegion, not_stored=["record_id", "record_length"])
EMBEDDINGS = EmbeddingRows.__table__  # a block's features: a few large rows, not row objects
# The fields rows take from their record, read back.
FROM_RECORD = {"record_id": attrgetter("id"), "record_length": attrgetter("length")}


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
    for table in (*(stored.table for stored in (FRAMES, CHUNKS, RECORDS, REGIONS)), EMBEDDINGS):
        connection.execute(
            delete(table).where(
                table.c.job_id == job_id, table.c.record >= first, table.c.record <= last
            )
        )
    FRAMES.write(connection, job_id, block.frames)
    CHUNKS.write(connection, job_id, block.chunks)
    RECORDS.write(connection, job_id, block.records)
    REGIONS.write(connection, job_id, block.regions)
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


def read_blocks(
    connection: Connection, job_id: int, records_per_block: int = 20_000
) -> Iterator[BlockResult]:
    """The job's results in input order, `records_per_block` records at a time (four
    streamed queries, merged by record ordinal; memory holds one block)."""
    records = _stream(connection, RECORDS, job_id)
    chunks, frames, regions = (
        _Peekable(_stream(connection, stored, job_id), stored.record_position)
        for stored in (CHUNKS, FRAMES, REGIONS)
    )
    while batch := list(itertools.islice(records, records_per_block)):
        last = batch[-1][RECORDS.record_position]
        region_rows = list(regions.take_through(last))
        counts = collections.Counter(row[REGIONS.record_position] for row in region_rows)
        indexes = [row[RECORDS.record_position] for row in batch]
        summaries = RECORDS.read(batch, viral_regions=[counts[index] for index in indexes])
        by_index = {record.index: record for record in summaries}
        yield BlockResult(
            records=summaries,
            chunks=_with_record(CHUNKS, list(chunks.take_through(last)), by_index),
            frames=_with_record(FRAMES, list(frames.take_through(last)), by_index),
            regions=_with_record(REGIONS, region_rows, by_index),
        )


def _with_record(stored: StoredRows, rows: list[Row], records: dict[int, RecordSummary]) -> list:
    """`stored`'s row objects, with the fields they take from their records."""
    owners = [records[row[stored.record_position]] for row in rows]
    taken = {name: list(map(FROM_RECORD[name], owners)) for name in stored.not_stored}
    return stored.read(rows, **taken)


def _stream(connection: Connection, stored: StoredRows, job_id: int) -> Iterator[Row]:
    options = {"stream_results": True, "yield_per": 10_000}
    return iter(connection.execution_options(**options).execute(stored.query(job_id)))


class _Peekable:
    """Rows sorted by record ordinal, taken a record range at a time."""

    def __init__(self, rows: Iterator[Row], record_position: int) -> None:
        self.rows, self.next = rows, next(rows, None)
        self.record_position = record_position

    def take_through(self, last_record: int) -> Iterator[Row]:
        while self.next is not None and self.next[self.record_position] <= last_record:
            row, self.next = self.next, next(self.rows, None)
            yield row
