"""Jobs and shards: an input stored as shards of whole records, its state, its inputs read back.

A job's input is read once: every record is checked as `predict` checks it while the shards
and their compressed inputs are written, in one transaction, so bad input stores nothing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from ..errors import UserError
from ..pipeline.parameters import JobParameters
from ..sequences.fasta import FastaRecord, read_pieces
from .models import Job, Shard, ShardInput, State

PART_BYTES = 64 << 20  # compressed input per row: well under every database's value limit
COMPRESSION = 1  # zlib level: 3-4x smaller FASTA at hundreds of MB/s


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class InputFile:
    """What run.json and the job row say of the input."""

    name: str
    sha256: str
    size: int


class _ShardWriter:
    """Records into shards of whole prediction blocks (records grouped until they hold
    `block_bases` bases, as the prediction stream groups them), so that each shard's worker
    forms the blocks `predict` would: the results are the same to the last bit. A shard takes
    blocks while it stays within `shard_chunks` chunks (a bigger block gets a shard alone)."""

    def __init__(
        self,
        session: Session,
        job: Job,
        chunk_size: int,
        block_bases: int,
        shard_chunks,
        delivery: datetime | None,
    ):
        self.session, self.job, self.delivery = session, job, delivery
        self.chunk_size, self.block_bases, self.shard_chunks = chunk_size, block_bases, shard_chunks
        self.block: list[FastaRecord] = []
        self.block_bases_so_far = self.block_chunks = 0
        self.shard: Shard | None = None
        self.compressor = zlib.compressobj(COMPRESSION)
        self.pending = bytearray()
        self.part = 0
        self.records = self.bases = self.chunks = 0

    def add(self, record: FastaRecord) -> None:
        self.block.append(record)
        self.block_bases_so_far += len(record.sequence)
        self.block_chunks += math.ceil(len(record.sequence) / self.chunk_size)
        if self.block_bases_so_far >= self.block_bases:
            self._write_block()

    def _write_block(self) -> None:
        limit = self.shard_chunks
        full = self.shard is not None and limit is not None
        if self.shard is None or (full and self.shard.chunks + self.block_chunks > limit):
            self._next_shard()
        shard = self.shard
        for record in self.block:
            chunks = math.ceil(len(record.sequence) / self.chunk_size)
            shard.record_count += 1
            shard.bases += len(record.sequence)
            shard.chunks += chunks
            self.pending += self.compressor.compress(f">{record.id}\n{record.sequence}\n".encode())
            if len(self.pending) >= PART_BYTES:
                self._write_part()
            self.records += 1
            self.bases += len(record.sequence)
            self.chunks += chunks
        self.block, self.block_bases_so_far, self.block_chunks = [], 0, 0

    def _next_shard(self) -> None:
        self._close_shard()
        index = 0 if self.shard is None else self.shard.index + 1
        self.shard = Shard(
            job_id=self.job.id,
            index=index,
            first_record=self.records,
            record_count=0,
            bases=0,
            chunks=0,
            state=self.job.state,
            attempts=0,
            frames_done=0,
            lease_expires_at=self.delivery,
        )
        self.session.add(self.shard)
        self.session.flush()
        self.compressor, self.part = zlib.compressobj(COMPRESSION), 0

    def _write_part(self) -> None:
        self.session.add(
            ShardInput(shard_id=self.shard.id, part=self.part, data=bytes(self.pending))
        )
        self.session.flush()
        self.pending.clear()
        self.part += 1

    def _close_shard(self) -> None:
        if self.shard is not None:
            self.pending += self.compressor.flush()
            self._write_part()

    def finish(self) -> None:
        if self.block:
            self._write_block()
        self._close_shard()


def create_job(
    session: Session,
    records: Iterable[FastaRecord],
    *,
    parameters: JobParameters,
    input_file: InputFile,
    shard_chunks: int | None,
    label: str | None = None,
    state: State = State.QUEUED,
) -> Job:
    """A job and its shards from `records` (checked as they are read: a bad record raises and
    the caller's transaction stores nothing). `shard_chunks` None: one shard. Each shard may
    take `parameters.attempts`; a queued shard's message has `parameters.lease_seconds` to
    reach Redis before a worker's sweep queues it again (None: the job is not queued)."""
    lease = parameters.lease_seconds
    delivery = None if lease is None else now() + timedelta(seconds=lease)
    job = Job(
        state=state,
        parameters=parameters.to_json(),
        label=label,
        input_name=input_file.name,
        input_sha256=input_file.sha256,
        input_bytes=input_file.size,
        records=0,
        bases=0,
        chunks=0,
        shards=0,
        shard_attempts=parameters.attempts,
        shards_done=0,
        records_done=0,
        frames_done=0,
        created_at=now(),
        started_at=now() if state == State.RUNNING else None,
    )
    session.add(job)
    session.flush()
    writer = _ShardWriter(
        session, job, parameters.chunk_size, parameters.block_bases, shard_chunks, delivery
    )
    for record in records:
        writer.add(record)
    writer.finish()
    if writer.shard is None:
        raise UserError(f"{input_file.name}: no records")
    job.records, job.bases, job.chunks = writer.records, writer.bases, writer.chunks
    job.shards = writer.shard.index + 1
    return job


def get_job(session: Session, job_id: int, where: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise UserError(f"no job {job_id} in {where}")
    return job


def shard_parts(connection: Connection, shard_id: int) -> Iterator[bytes]:
    """The shard's compressed input, part by part, as read from the database."""
    query = select(ShardInput.data).where(ShardInput.shard_id == shard_id)
    return connection.execute(query.order_by(ShardInput.part)).scalars()


def shard_records(parts: Iterable[bytes], shard_id: int) -> Iterator[FastaRecord]:
    """The records of a shard's compressed input parts, decompressed as they are read."""
    decompressor = zlib.decompressobj()
    return read_pieces((decompressor.decompress(part) for part in parts), f"shard {shard_id}")


def set_state(session: Session, job: Job, state: State, error: str | None = None) -> None:
    job.state = state
    if state == State.RUNNING and job.started_at is None:
        job.started_at = now()
    if state in (State.SUCCEEDED, State.FAILED, State.CANCELLED):
        job.finished_at = now()
        session.execute(
            update(Shard)
            .where(Shard.job_id == job.id, Shard.state.in_([State.QUEUED, State.RUNNING]))
            .values(state=state, finished_at=now(), lease_expires_at=None)
        )
    job.error = error
