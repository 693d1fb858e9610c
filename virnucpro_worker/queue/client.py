"""`Client`: submit inputs to the worker pool and follow them.

A submission is checked whole and stored in the database as shards of whole records in one
transaction (bad input stores nothing), then announced through Redis: one RQ job per shard and
a finalize job that waits for them. Redis only carries ids; if it loses its data,
`recover()` announces again what the database says is unfinished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..attention.registry import get_backend
from ..errors import UserError
from ..files import sha256_of
from ..models.model_files import ModelFiles
from ..pipeline.prediction import Prediction
from ..pipeline.regions import RegionRule
from ..sequences.chunking import CHUNK_SIZES
from ..sequences.fasta import check_input_file
from ..sequences.sources import Source, records_of, source_path
from ..settings import Settings
from ..store.jobs import InputFile, get_job
from ..store.models import FINISHED, State
from ..store.shards import cancel_job, unfinished_jobs
from ..store.store import Store
from . import messages


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

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def line(self) -> str:
        error = f"; {self.error}" if self.error else ""
        return (
            f"job {self.id}: {self.state}, shards {self.shards_done}/{self.shards}, records "
            f"{self.records_done}/{self.records}, {self.frames_done} frames{error}"
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
    ) -> int:
        """Store `source` (a path, a stream or (id, sequence) pairs) as a new job and queue its
        shards; returns the job id. A shard holds whole prediction blocks (settings
        `block_bases`), at most `shard_chunks` chunks (settings: about a minute of work on an
        H200) unless a single block has more. The job runs on workers with demo models if
        `demo`, with real ones otherwise; given `models`, only on workers whose model files have
        the same sha256 (then the files must be readable here)."""
        if chunk_size not in CHUNK_SIZES:
            raise UserError(f"chunk size must be one of {CHUNK_SIZES}, not {chunk_size}")
        attention = attention or self.settings.attention
        get_backend(attention)
        shard_chunks = shard_chunks or self.settings.shard_chunks
        if shard_chunks < 1:
            raise UserError(f"shard_chunks must be at least 1, not {shard_chunks}")
        with messages.redis_errors(self.redis_url):
            self.redis.ping()  # before anything is stored
        path = source_path(source)
        parameters = {
            "chunk_size": chunk_size,
            "attention": attention,
            "block_bases": self.settings.block_bases,
            "models": {"sha256": models.fingerprint(chunk_size)} if models else {"demo": demo},
            "region_rule": regions.to_json(),
        }
        job_id = self.store.create_job(
            records_of(source, self.settings.limits),
            parameters=parameters,
            input_file=_input_file(path, self.settings),
            shard_chunks=shard_chunks,
            label=label,
        )
        self._announce(job_id)
        return job_id

    def _announce(self, job_id: int, only_missing: bool = False) -> int:
        """Queue the job's unfinished shards (`only_missing`: those Redis has no live job for:
        lost, or failed while the database was away) and its finalize; returns how many
        shards were queued."""
        job = self.store.job(job_id)
        unfinished = (State.QUEUED, State.RUNNING)
        shards = [shard.id for shard in self.store.shards(job_id) if shard.state in unfinished]
        queue = messages.queue(self.redis, self.settings.queue, job.parameters["chunk_size"])
        options = {
            "attempts": self.settings.shard_attempts,
            "shard_timeout": self.settings.shard_timeout,
        }
        with messages.redis_errors(self.redis_url):
            if not only_missing:
                messages.enqueue_job(queue, job_id, shards, **options)
                return len(shards)
            known = partial(messages.message_exists, self.redis)
            missing = [s for s in shards if not known(messages.shard_message_id(s))]
            for shard_id in missing:
                messages.enqueue_shard(queue, shard_id, **options)
            if missing or not known(messages.finalize_message_id(job_id)):
                waits_for = [messages.shard_message_id(shard_id) for shard_id in shards]
                messages.enqueue_finalize(queue, job_id, waits_for)
            return len(missing)

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
        """Cancel the job: queued shards never run, running ones stop at their next block."""
        with self.store.session() as session:
            cancel_job(session, get_job(session, job_id, f"database {self.store.name}"))
        ids = [messages.shard_message_id(s.id) for s in self.store.shards(job_id)]
        with messages.redis_errors(self.redis_url):
            messages.cancel_messages(self.redis, [*ids, messages.finalize_message_id(job_id)])
        return self.status(job_id)

    def results(self, job_id: int) -> Prediction:
        return self.store.prediction(job_id)

    def write_outputs(self, job_id: int, out_dir: Path | str, viral_fasta: bool = False) -> None:
        """The files `virnucpro predict` writes for the same input and models, byte for byte
        (run.json describes the job, its shards and workers)."""
        self.store.write_outputs(job_id, out_dir, viral_fasta=viral_fasta)

    def recover(self) -> int:
        """Queue again every unfinished shard (by the database) that Redis has no live job
        for, as after Redis lost its data, and its job's finalize; returns how many shards."""
        with messages.redis_errors(self.redis_url):
            self.redis.ping()
        with self.store.session() as session:
            jobs = unfinished_jobs(session)
        return sum(self._announce(job_id, only_missing=True) for job_id in jobs)


def _input_file(path: Path | None, settings: Settings) -> InputFile:
    if path is None:
        return InputFile("<stream>", "", 0)
    check_input_file(path, settings.limits)
    return InputFile(str(path.resolve()), sha256_of(path), path.stat().st_size)
