"""`Client`: submit inputs to the worker pool and follow them.

A submission is checked whole and stored in the database as shards of whole records in one
transaction (bad input stores nothing), then announced through Redis: one RQ job per shard on
the queue of the model set and chunk size it asks for, where it waits for a worker that serves
them. Redis only carries ids; the workers' sweep sends again whatever the database says needs a
message (`recover()` does the same at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import redis
from rq import Worker

from ..attention.registry import get_backend
from ..errors import UserError
from ..files import sha256_of
from ..models.model_files import ModelFiles
from ..pipeline.embeddings import check_dtype
from ..pipeline.parameters import JobParameters, ModelRequest
from ..pipeline.prediction import Prediction
from ..pipeline.regions import RegionRule
from ..sequences.chunking import CHUNK_SIZES
from ..sequences.fasta import check_input_file
from ..sequences.sources import Source, records_of, source_path
from ..settings import Settings
from ..store.jobs import InputFile
from ..store.models import FINISHED, Job
from ..store.shards import UNFINISHED, cancel_job
from ..store.store import Store
from . import messages, sweep


@dataclass(frozen=True)
class JobStatus:
    id: int
    state: str  # queued, running, succeeded, failed, cancelled
    shards_done: int
    shards: int
    records_done: int
    records: int
    frames_done: int
    error: str | None
    # While the job has not ended and no live worker serves its queue: which model set and
    # chunk size it waits for.
    unserved: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def line(self) -> str:
        error = self.error if self.error != self.state else None  # "cancelled; cancelled"
        notes = "".join(f"; {note}" for note in (error, self.unserved) if note)
        return (
            f"job {self.id}: {self.state}, shards {self.shards_done}/{self.shards}, records "
            f"{self.records_done}/{self.records}, {self.frames_done} frames{notes}"
        )


class Client:
    """The worker pool behind `redis_url`, and the database `db_url` its jobs live in."""

    def __init__(self, redis_url: str, db_url: str, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.redis_url = redis_url
        self.redis = messages.connect(redis_url)
        self.store = Store(db_url)

    def submit(
        self,
        source: Source,
        chunk_size: int = 500,
        *,
        attention: str | None = None,
        demo: bool = False,
        models: ModelFiles | None = None,
        shard_chunks: int | None = None,
        label: str | None = None,
        regions: RegionRule = RegionRule(),  # noqa: B008 (frozen: one shared default is safe)
        embeddings: str | None = None,
    ) -> int:
        """Store `source` (a path, a stream or (id, sequence) pairs) as a new job and queue its
        shards; returns the job id. A shard holds whole prediction blocks (settings
        `block_bases`), at most `shard_chunks` chunks (settings: about a minute of work on an
        H200) unless a single block has more. The job runs on workers with demo models if
        `demo`, with real ones otherwise; given `models`, only on workers whose model files have
        the same sha256 (then the files must be readable here). `embeddings` (float16,
        float32): the workers also keep every frame's features, for `write_outputs` to write
        embeddings.safetensors and `results(job, embeddings=True)` to return."""
        if chunk_size not in CHUNK_SIZES:
            raise UserError(f"chunk size must be one of {CHUNK_SIZES}, not {chunk_size}")
        settings = replace(self.settings, attention=attention) if attention else self.settings
        get_backend(settings.attention)
        shard_chunks = shard_chunks or settings.shard_chunks
        if shard_chunks < 1:
            raise UserError(f"shard_chunks must be at least 1, not {shard_chunks}")
        if embeddings is not None:
            check_dtype(embeddings)
        with messages.redis_errors(self.redis_url):
            self.redis.ping()  # before anything is stored
        path = source_path(source)
        request = ModelRequest(demo, models.fingerprint(chunk_size) if models else None)
        parameters = settings.job_parameters(
            chunk_size, request, regions, queued=True, embeddings=embeddings
        )
        job_id = self.store.create_job(
            records_of(source, settings.limits),
            parameters=parameters,
            input_file=_input_file(path, settings),
            shard_chunks=shard_chunks,
            label=label,
        )
        shards = [shard.id for shard in self.store.shards(job_id)]
        with messages.redis_errors(self.redis_url):
            messages.deliver(self.redis, self._queue_of(self.store.job(job_id)), shards)
        return job_id

    def _queue_of(self, job: Job) -> str:
        return messages.queue_of_job(self.settings.queue, job)

    def status(self, job_id: int) -> JobStatus:
        job = self.store.job(job_id)
        return JobStatus(
            job.id,
            job.state,
            job.shards_done,
            job.shards,
            job.records_done,
            job.records,
            job.frames_done,
            job.error,
            self._unserved(job) if job.state in UNFINISHED else None,
        )

    def _unserved(self, job: Job) -> str | None:
        """Why the job waits, when no live worker serves its queue (None when one does, or
        Redis cannot tell: the state comes from the database)."""
        parameters = JobParameters.from_json(job.parameters)
        pinned = messages.pinned_model_set(job)
        queue = messages.shard_queue(
            self.redis, messages.job_queue_name(self.settings.queue, parameters, pinned)
        )
        try:
            if Worker.all(connection=self.redis, queue=queue):
                return None
        except redis.exceptions.RedisError:
            return None
        return (
            f"no live worker serves model set {messages.job_model_set(parameters, pinned)} / "
            f"chunk size {parameters.chunk_size} (queue {queue.name})"
        )

    def wait(
        self,
        job_id: int,
        timeout: float | None = None,
        on_status: Callable[[JobStatus], None] | None = None,
        poll: float = 0.5,
    ) -> JobStatus:
        """Block until the job has ended (or `timeout` seconds: TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if on_status is not None:
                on_status(status)
            if status.finished:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status.state} after {timeout} s")
            time.sleep(poll)

    def cancel(self, job_id: int) -> JobStatus:
        """Cancel the job: queued shards never run, running ones stop at their next block.
        Cancelling wins over a shard being claimed or finished at the same moment."""
        if self.store.transaction(lambda session: cancel_job(session, job_id)) is None:
            raise UserError(f"no job {job_id} in database {self.store.name}")
        with messages.redis_errors(self.redis_url):
            messages.cancel_messages(self.redis, [s.id for s in self.store.shards(job_id)])
        return self.status(job_id)

    def results(self, job_id: int, embeddings: bool = False) -> Prediction:
        """The job's results; with `embeddings`, its frames' features (`Prediction.embeddings`;
        the job must have been submitted with embeddings)."""
        return self.store.prediction(job_id, embeddings)

    def write_outputs(self, job_id: int, out_dir: Path | str, viral_fasta: bool = False) -> None:
        """The files `virnucpro predict` writes for the same input and models, byte for byte
        (run.json describes the job, its shards and workers)."""
        self.store.write_outputs(job_id, out_dir, viral_fasta=viral_fasta)

    def recover(self) -> int:
        """What the workers' sweep does, at once: queue again every queued shard whose message
        no longer waits in Redis (as after Redis lost its data) and every running one whose
        lease ran out; returns how many shards were queued."""
        with messages.redis_errors(self.redis_url):
            self.redis.ping()
            return sweep.sweep(self.store, self.redis, self.settings, every_queued=True)


def _input_file(path: Path | None, settings: Settings) -> InputFile:
    if path is None:
        return InputFile("<stream>", "", 0)
    check_input_file(path, settings.limits)
    return InputFile(str(path.resolve()), sha256_of(path), path.stat().st_size)
