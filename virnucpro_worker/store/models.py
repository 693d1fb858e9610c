"""The database schema: jobs, their shards and inputs, every prediction, and provenance.

The database is the service's source of truth: what was asked, what ran where, every result.
Migrations (the top-level `alembic/` folder) are the only way this schema reaches a database;
`alembic check` in the tests proves the two agree.

Scores are stored as 32-bit floats (REAL), the values the model computed: results read back
give the result files byte for byte.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names fixed here, so that migrations name them the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class State(StrEnum):
    """Of a job and of a shard."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)


def _job_id() -> Mapped[int]:
    """The job column of the prediction tables. No foreign key: checking one per row halves
    PostgreSQL's COPY rate (benchmarks/RESULTS.md), and only `shards.commit_block`, for a
    shard of a running job, writes these rows."""
    return mapped_column(Integer, primary_key=True)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    # What was asked: chunk size, attention backend, the model set asked for.
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The model set used (names and sha256 of the three model files), once a shard has run.
    model_set: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    label: Mapped[str | None] = mapped_column(Text)
    input_name: Mapped[str] = mapped_column(Text)
    input_sha256: Mapped[str] = mapped_column(String(64))
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    bases: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(BigInteger)
    shards: Mapped[int] = mapped_column(Integer)
    # Attempts each shard may take (a failure or a lease that ran out ends one), fixed at submit.
    shard_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    shards_done: Mapped[int] = mapped_column(Integer, default=0)
    records_done: Mapped[int] = mapped_column(BigInteger, default=0)
    frames_done: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Shard(Base):
    """Whole records of a job's input, run as one unit of work."""

    __tablename__ = "shards"
    __table_args__ = (
        UniqueConstraint("job_id", "index"),
        Index("ix_shards_state_lease_expires_at", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)  # 0, 1, ... in input order
    first_record: Mapped[int] = mapped_column(BigInteger)  # ordinal in the job's input
    record_count: Mapped[int] = mapped_column(Integer)
    bases: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    frames_done: Mapped[int] = mapped_column(BigInteger, default=0)
    worker: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who has the shard until when: its worker while it runs (renewed by every heartbeat; when it
    # runs out the shard runs again elsewhere), its message for a grace period while it is
    # queued (then a sweep checks that the message still waits in Redis). shards.py owns it.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # this shard's run record
    error: Mapped[str | None] = mapped_column(Text)


class ShardInput(Base):
    """A shard's records as zlib-compressed FASTA text, in parts of at most 64 MiB (a
    database value has a size limit), so that a worker needs nothing but the database."""

    __tablename__ = "shard_inputs"

    shard_id: Mapped[int] = mapped_column(
        ForeignKey("shards.id", ondelete="CASCADE"), primary_key=True
    )
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class FramePrediction(Base):
    __tablename__ = "frame_predictions"

    job_id: Mapped[int] = _job_id()
    record: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # ordinal in the input
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    strand: Mapped[str] = mapped_column(String(1), primary_key=True)  # "F" or "R"
    frame: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 1..3
    others_score: Mapped[float] = mapped_column(REAL)
    virus_score: Mapped[float] = mapped_column(REAL)
    label: Mapped[str] = mapped_column(String(8))


class ChunkPrediction(Base):
    __tablename__ = "chunk_predictions"

    job_id: Mapped[int] = _job_id()
    record: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    kept_frames: Mapped[int] = mapped_column(SmallInteger)
    max_others_score: Mapped[float] = mapped_column(REAL)
    max_virus_score: Mapped[float] = mapped_column(REAL)
    is_virus: Mapped[bool] = mapped_column(Boolean)


class RecordPrediction(Base):
    __tablename__ = "record_predictions"
    __table_args__ = (Index("ix_record_predictions_job_id_call", "job_id", "call"),)

    job_id: Mapped[int] = _job_id()
    record: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    record_id: Mapped[str] = mapped_column(Text)
    length: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    kept_frames: Mapped[int] = mapped_column(Integer)
    scored_chunks: Mapped[int] = mapped_column(Integer)
    viral_chunks: Mapped[int] = mapped_column(Integer)
    max_virus_score: Mapped[float | None] = mapped_column(REAL)
    viral_chunk_fraction: Mapped[float | None] = mapped_column(Double)
    call: Mapped[str] = mapped_column(String(8))


class RegionPrediction(Base):
    """A viral region along a record (docs/ALGORITHM.md 10): chunks first..last, bases
    [start, end) 0-based."""

    __tablename__ = "viral_regions"

    job_id: Mapped[int] = _job_id()
    record: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based in its record
    first_chunk: Mapped[int] = mapped_column(Integer)
    last_chunk: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    viral_chunks: Mapped[int] = mapped_column(Integer)
    scored_chunks: Mapped[int] = mapped_column(Integer)
    mean_virus_score: Mapped[float] = mapped_column(REAL)
    max_virus_score: Mapped[float] = mapped_column(REAL)


class EmbeddingRows(Base):
    """Part of a block's features (a job submitted with `--embeddings`): `rows` consecutive
    kept frames of the block whose first record is `record`, as raw bytes in the job's dtype
    (pipeline/embeddings.EmbeddingPart). Parts follow the frames' order."""

    __tablename__ = "frame_embeddings"

    job_id: Mapped[int] = _job_id()
    record: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the block's first
    part: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, 1, ... in the block
    rows: Mapped[int] = mapped_column(Integer)
    dnabert_s: Mapped[bytes] = mapped_column(LargeBinary)
    esm2: Mapped[bytes] = mapped_column(LargeBinary)


class Provenance(Base):
    """The run.json a job's files hold, as its exact text."""

    __tablename__ = "provenance"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    run_json: Mapped[str] = mapped_column(Text)
