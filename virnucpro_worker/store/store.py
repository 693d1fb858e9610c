"""`Store`: one database of jobs and results, and everything the rest of the code asks of it."""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import UserError
from ..pipeline.embeddings import EmbeddingPart, EmbeddingRecorder
from ..pipeline.outputs import ResultWriter
from ..pipeline.parameters import JobParameters
from ..pipeline.prediction import Prediction
from ..pipeline.results import BlockResult
from ..redact import redact_url
from ..sequences.fasta import FastaRecord
from . import schema
from .engine import DatabaseError, database_errors, make_engine, session_factory
from .jobs import (
    create_job,
    get_job,
    shard_parts,
    shard_records,
)
from .models import Job, Provenance, Shard, State
from .results import read_blocks, read_embeddings

T = TypeVar("T")
CONFLICT_TRIES = 8


class Store:
    """The database at `url` (SQLite or PostgreSQL). An empty database gets the schema on
    first use; one at an older revision must be upgraded first (`virnucpro db upgrade`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = redact_url(url)
        with database_errors(url):
            self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self._ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.name!r})"

    # The schema ------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        with database_errors(self.url):
            schema.upgrade(self.engine)
        self._ready = True

    def current(self) -> str | None:
        """The schema's migration, None for an empty database."""
        with database_errors(self.url):
            return schema.current(self.engine)

    def _require_schema(self) -> None:
        with self._schema_lock:
            self._check_schema()

    def _check_schema(self) -> None:
        if self._ready:
            return
        revision, head = self.current(), schema.head()
        if revision is None:
            self._initialize(head)
        elif revision != head:
            raise UserError(
                f"database {self.name} has schema {revision}, this version needs {head}: "
                f"run `virnucpro db upgrade --db URL`"
            )
        self._ready = True

    def _initialize(self, head: str) -> None:
        """The schema of an empty database; another process may be creating it at the same
        moment (workers starting together): then its schema is the one to use."""
        try:
            self.upgrade()
        except UserError:
            deadline = time.monotonic() + 60
            while self.current() != head:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on an error."""
        self._require_schema()
        with database_errors(self.url), self.sessions.begin() as session:
            yield session

    def transaction(self, operation: Callable[[Session], T]) -> T:
        """`operation(session)` in a transaction of its own, run again (a few times, after a
        short random pause) when the database aborted it in favour of a concurrent one (a
        deadlock or serialization failure; SQLite's lock timeout)."""
        tries = 1
        while True:
            try:
                with self.session() as session:
                    return operation(session)
            except DatabaseError as error:
                if not error.conflict or tries == CONFLICT_TRIES:
                    raise
            time.sleep(random.uniform(0, 0.05 * tries))
            tries += 1

    # Jobs ------------------------------------------------------------------------------------

    def create_job(self, records: Iterable[FastaRecord], **options: Any) -> int:
        """Store the input as a job's shards (jobs.create_job says how; `options` are its):
        every record is checked, and bad input stores nothing."""
        with self.session() as session:
            return create_job(session, records, **options).id

    def jobs(self) -> list[Job]:
        with self.session() as session:
            return list(session.scalars(select(Job).order_by(Job.id)))

    def job(self, job_id: int) -> Job:
        with self.session() as session:
            return get_job(session, job_id, f"database {self.name}")

    def shards(self, job_id: int) -> list[Shard]:
        with self.session() as session:
            get_job(session, job_id, f"database {self.name}")
            query = select(Shard).where(Shard.job_id == job_id).order_by(Shard.index)
            return list(session.scalars(query))

    # Results ---------------------------------------------------------------------------------

    def run_record(self, job_id: int) -> dict[str, Any]:
        with self.session() as session:
            job = get_job(session, job_id, f"database {self.name}")
            if job.state != State.SUCCEEDED:
                detail = f": {job.error}" if job.error else ""
                raise UserError(f"job {job_id} has no results: it is {job.state}{detail}")
            return json.loads(session.get(Provenance, job_id).run_json)

    def blocks(self, job_id: int, viral_sequences: bool = False) -> Iterator[BlockResult]:
        """The job's results in input order, a block at a time; with `viral_sequences`, each
        block carries the sequences of its records called virus (from the stored input)."""
        self.run_record(job_id)  # only a succeeded job has results
        blocks = self.committed_blocks(job_id)
        if viral_sequences:
            blocks = _with_viral_sequences(blocks, self._input_records(job_id))
        yield from blocks

    def committed_blocks(self, job_id: int) -> Iterator[BlockResult]:
        """The rows the job's blocks have committed so far, in input order: all its results
        once it has succeeded, what an interrupted `predict --db` run had done before."""
        with database_errors(self.url), self.engine.connect() as connection:
            yield from read_blocks(connection, job_id)

    def _input_records(self, job_id: int) -> Iterator[FastaRecord]:
        for shard in self.shards(job_id):
            with database_errors(self.url), self.engine.connect() as connection:
                yield from shard_records(shard_parts(connection, shard.id), shard.id)

    def shard_input(self, shard_id: int) -> list[bytes]:
        """A shard's compressed input, read whole (a worker then needs no connection for it)."""
        with database_errors(self.url), self.engine.connect() as connection:
            return list(shard_parts(connection, shard_id))

    def prediction(self, job_id: int, embeddings: bool = False) -> Prediction:
        """The job's results; with `embeddings`, its frames' features too (a job submitted
        with them)."""
        run = self.run_record(job_id)
        frames, chunks, records, regions = [], [], [], []
        for block in self.blocks(job_id):
            frames += block.frames
            chunks += block.chunks
            records += block.records
            regions += block.regions
        arrays = None
        if embeddings:
            with tempfile.TemporaryDirectory(prefix="virnucpro-embeddings-") as scratch:
                options = self._embeddings_of(job_id, run, required=True)
                with EmbeddingRecorder(Path(scratch), *options) as recorder:
                    recorder.add_keys(frames)
                    for part in self.committed_embeddings(job_id):
                        recorder.add_part(part)
                    arrays = recorder.load()
        return Prediction(frames, chunks, records, regions, run, arrays)

    def write_outputs(self, job_id: int, out_dir: Path | str, viral_fasta: bool = False) -> None:
        """Write the files `virnucpro predict` wrote for the job, byte for byte (run.json
        included; embeddings.safetensors for a job submitted with embeddings), streaming the
        rows."""
        run = self.run_record(job_id)
        writer = ResultWriter(
            Path(out_dir),
            demo=run["demo_models"],
            viral_fasta=viral_fasta,
            embeddings=self._embeddings_of(job_id, run),
        )
        with writer:
            for block in self.blocks(job_id, viral_sequences=viral_fasta):
                writer.add(block)
            if writer.writes_embeddings:
                for part in self.committed_embeddings(job_id):
                    writer.add_embedding_part(part)
            writer.commit(run)

    def _embeddings_of(
        self, job_id: int, run: dict[str, Any], required: bool = False
    ) -> tuple[str, tuple[int, int]] | None:
        """(dtype, feature widths) of a job submitted with embeddings, else None (or, when
        `required`, a one-line error)."""
        dtype = JobParameters.from_json(self.job(job_id).parameters).embeddings
        if dtype is None:
            if required:
                raise UserError(f"job {job_id} was not submitted with embeddings")
            return None
        widths = run.get("feature_widths")
        if widths is None:  # run by workers of a version that kept no features
            raise UserError(f"job {job_id} asked for embeddings, but its workers did not keep them")
        return dtype, (widths["dnabert_s"], widths["esm2"])

    def committed_embeddings(self, job_id: int) -> Iterator[EmbeddingPart]:
        """The features the job's blocks have committed so far (a job asked for embeddings),
        in the order of its frames."""
        with database_errors(self.url), self.engine.connect() as connection:
            yield from read_embeddings(connection, job_id)


def _with_viral_sequences(
    blocks: Iterator[BlockResult], records: Iterator[FastaRecord]
) -> Iterator[BlockResult]:
    """Attach the sequences of each block's viral records, read from the input in order."""
    numbered = enumerate(records)
    pending = next(numbered, None)
    for block in blocks:
        viral = {record.index for record in block.records if record.call == "virus"}
        last = block.records[-1].index if block.records else -1
        block.viral_sequences = {}
        while pending is not None and pending[0] <= last:
            index, record = pending
            if index in viral:
                block.viral_sequences[index] = record.sequence
            pending = next(numbered, None)
        yield block
