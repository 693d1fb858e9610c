"""Running one shard in a worker: claim it in the database, check the worker can run it, stream
its records from the database through the prediction stream, write each block, finish.

Everything is idempotent: a shard run twice (a duplicate message, a worker presumed dead that
was not) leaves one row per frame, and only the worker holding a shard's lease can write its
blocks (each with the check, in one transaction: `commit_block`) or finish it.
Finishing the last shard ends the job in the same transaction. A failed attempt is recorded in
the database, which counts attempts, and the shard gets a new message if it has one left; a
shard this worker cannot run, or is asked to stop in the middle of, is given back (the attempt
not counted). Every database step waits out an unreachable database (`database_patience`).
A lost GPU is raised (`DeviceLost`) once its attempt is recorded: the worker stops.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import torch

from ..errors import UserError, first_line
from ..models.model_files import ModelSet
from ..pipeline.embeddings import BlockFeatures
from ..pipeline.provenance import now, run_record
from ..pipeline.results import RunTotals
from ..pipeline.stream import predict_stream
from ..settings import Settings
from ..store.engine import patiently
from ..store.jobs import shard_records
from ..store.shards import (
    Claim,
    Failure,
    claim_shard,
    commit_block,
    fail_shard,
    finish_shard,
    pin_model_set,
    release_shard,
    renew_lease,
)
from ..store.store import Store
from . import messages

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..pipeline.predictor import Predictor

log = logging.getLogger(__name__)
T = TypeVar("T")


class ShardRefused(UserError):
    """This worker cannot run the shard (another model set, a chunk size it has no classifier
    for): another worker may."""


class DeviceLost(RuntimeError):
    """The GPU failed in a way that leaves it unusable: the shard's attempt is recorded (it
    runs again elsewhere); the worker must stop."""


class ShardRunner:
    """Runs shards for the worker `name`, which serves `queues` of the Redis `connection`;
    `stopping()` says when the worker was asked to stop (a shard then gives itself back)."""

    def __init__(
        self,
        settings: Settings,
        predictor: Predictor,
        *,
        name: str,
        connection: redis.Redis,
        queues: list[str],
        stopping: Callable[[], bool],
    ) -> None:
        self.settings, self.predictor = settings, predictor
        self.name, self.connection, self.queues, self.stopping = name, connection, queues, stopping
        self.store = Store(settings.database_url)
        self.device = predictor.provenance(predictor.chunk_sizes[0])["device"]
        self.shard_id: int | None = None  # the shard running now, for the heartbeat thread
        self._lock = threading.Lock()

    def _in_session(self, operation: Callable[[Session], T], what: str) -> T:
        """`operation(session)` in a transaction, waiting out an unreachable database."""
        return patiently(
            lambda: self.store.transaction(operation), self.settings.database_patience, what
        )

    def renew_lease(self) -> None:
        """Extend the running shard's lease (a DatabaseError when the database is away)."""
        with self._lock:
            shard_id = self.shard_id
        if shard_id is not None:  # no patience: the next heartbeat tries again
            lease = self.settings.lease_seconds
            self.store.transaction(lambda session: renew_lease(session, shard_id, self.name, lease))

    def run(self, shard_id: int) -> dict[str, Any]:
        claim = self._in_session(
            lambda session: claim_shard(
                session,
                shard_id,
                worker=self.name,
                host=socket.gethostname(),
                device=self.device,
                lease=self.settings.lease_seconds,
            ),
            f"claiming shard {shard_id}",
        )
        if claim is None:
            log.info("shard %d: ended, cancelled or leased to a worker; nothing to do", shard_id)
            return {"shard": shard_id, "ran": False}
        with self._lock:
            self.shard_id = shard_id
        try:
            return self._run(claim)
        except ShardRefused as refused:
            log.warning("shard %d: %s; given back", shard_id, refused)
            self._give_back(claim, elsewhere=True)
            return {"shard": shard_id, "ran": False, "refused": str(refused)}
        except Exception as error:
            return {"shard": shard_id, "ran": False, "error": self._failed(claim, error)}
        finally:
            with self._lock:
                self.shard_id = None

    def _run(self, claim: Claim) -> dict[str, Any]:
        parameters = claim.parameters
        predictor = self._predictor_for(claim)
        started, totals = now(), RunTotals()
        parts = patiently(
            lambda: self.store.shard_input(claim.shard_id), self.settings.database_patience, "input"
        )
        features = BlockFeatures(parameters.embeddings, predictor.feature_widths[0])
        blocks = predict_stream(
            predictor,
            shard_records(parts, claim.shard_id),
            parameters.chunk_size,
            first_index=claim.first_record,
            block_bases=parameters.block_bases,
            regions=parameters.region_rule,
            on_features=features.add if features.dtype else None,
        )
        for block in blocks:
            start = time.perf_counter()
            still_ours = self._in_session(
                functools.partial(
                    commit_block,
                    job_id=claim.job_id,
                    shard_id=claim.shard_id,
                    worker=self.name,
                    block=block,
                    embeddings=features.take(),
                ),
                f"writing shard {claim.shard_id}",
            )
            if not still_ours:
                log.info("shard %d: cancelled or taken over; stopping", claim.shard_id)
                return {"shard": claim.shard_id, "ran": False}
            totals.add(block)
            totals.add_seconds({"write": time.perf_counter() - start})  # as `predict` counts it
            self._report(totals)
            if self.stopping():
                log.info("shard %d: the worker is stopping; given back", claim.shard_id)
                self._give_back(claim, elsewhere=False)
                return {"shard": claim.shard_id, "ran": False}
        record = run_record(
            predictor,
            parameters.chunk_size,
            {"shard": claim.shard_id},
            totals,
            started,
            block_bases=parameters.block_bases,
            region_rule=parameters.region_rule,
        )
        job_state = self._in_session(
            lambda session: finish_shard(session, claim.shard_id, self.name, record),
            f"finishing shard {claim.shard_id}",
        )
        if job_state is None:
            log.info("shard %d: cancelled or taken over before it finished", claim.shard_id)
            return {"shard": claim.shard_id, "ran": False}
        if job_state != "running":
            log.info("job %d: %s", claim.job_id, job_state)
        return {"shard": claim.shard_id, "ran": True, "frames": totals.kept_frames}

    def _predictor_for(self, claim: Claim) -> Predictor:
        """The worker's models through the job's backend, if they are the job's models."""
        chunk_size = claim.parameters.chunk_size
        if chunk_size not in self.predictor.chunk_sizes:
            raise ShardRefused(f"worker {self.name} has no classifier for {chunk_size} bp chunks")
        asked = claim.parameters.models
        predictor = self.predictor.with_attention(claim.parameters.attention)
        loaded = predictor.model_set(chunk_size)
        if asked.files is not None:  # submitted with its model files
            if loaded != asked.files:
                raise ShardRefused(
                    f"worker {self.name}'s model files are not the ones job {claim.job_id} was "
                    "submitted with (their sha256 differ)"
                )
        elif asked.demo != self.predictor.demo:
            kind = "demo" if asked.demo else "real"
            raise ShardRefused(
                f"the job asks for {kind} models; worker {self.name} has the other kind"
            )
        models = predictor.provenance(chunk_size)["models"]
        pinned = ModelSet.of_run(
            self._in_session(
                lambda session: pin_model_set(session, claim.job_id, models),
                "pinning the model set",
            )
        )
        if pinned != loaded:
            raise ShardRefused(
                f"worker {self.name}'s model files differ from the ones job {claim.job_id} "
                f"runs on (its first shard pinned model set {pinned.key})"
            )
        return predictor

    def _report(self, totals: RunTotals) -> None:
        """Progress in the RQ job's meta (the database's counters move with each block: they
        are the ones that count)."""
        from rq import get_current_job

        job = get_current_job()
        if job is None:
            return
        job.meta.update(records_done=totals.records, frames_done=totals.kept_frames)
        try:
            job.save_meta()
        except redis.exceptions.RedisError as error:  # Redis away for a moment: the shard goes on
            log.warning("shard progress not saved in Redis: %s", first_line(error))

    def _failed(self, claim: Claim, error: Exception) -> str:
        """Record the attempt (one log line; the traceback at debug level) and queue the shard
        again if it has an attempt left; an exhausted GPU frees memory, a lost one raises
        `DeviceLost` once the attempt is recorded. Returns the message."""
        message = _describe(error, self.device)
        log.error("shard %d, attempt %d: %s", claim.shard_id, claim.attempt, message)
        log.debug("shard %d: the error's traceback", claim.shard_id, exc_info=error)
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        self._record_failure(claim, message)
        if device_lost(error):
            raise DeviceLost(message) from error
        return message

    def _record_failure(self, claim: Claim, message: str) -> None:
        delivery = self.settings.lease_seconds
        try:
            outcome = self._in_session(
                lambda session: fail_shard(session, claim.shard_id, self.name, message, delivery),
                f"recording the failure of shard {claim.shard_id}",
            )
        except UserError as store_error:  # still away: its lease runs out, the sweep requeues it
            log.error("shard %d: cannot record the failure: %s", claim.shard_id, store_error)
            return
        if outcome == Failure.RETRY:
            self._deliver(claim, elsewhere=False)
        elif outcome == Failure.LAST:
            log.error("job %d failed: shard %d had no attempt left", claim.job_id, claim.shard_id)

    def _give_back(self, claim: Claim, elsewhere: bool) -> None:
        """Queue the claimed shard again without counting the attempt (`elsewhere`: this worker
        cannot run it, so it is not sent to a queue this worker serves)."""
        delivery = self.settings.lease_seconds
        released = self._in_session(
            lambda session: release_shard(session, claim.shard_id, self.name, delivery),
            f"giving back shard {claim.shard_id}",
        )
        if released:
            self._deliver(claim, elsewhere)

    def _deliver(self, claim: Claim, elsewhere: bool) -> None:
        """A fresh message for the shard on its job's queue (the job's model set may have been
        pinned since the claim); if that fails, the sweep sends one after the grace period."""
        queue = messages.queue_of_job(self.settings.queue, self.store.job(claim.job_id))
        if elsewhere and queue in self.queues:
            return  # sent back here it would come straight back: the sweep retries it later
        try:
            messages.deliver(self.connection, queue, [claim.shard_id], fresh=True)
        except redis.exceptions.RedisError as error:
            log.warning("shard %d: not queued again (%s); the sweep will", claim.shard_id, error)


def device_lost(error: BaseException) -> bool:
    """A CUDA error that leaves the device unusable (not running out of memory)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return False
    text = str(error)
    return isinstance(error, RuntimeError) and ("CUDA error" in text or "cudaError" in text)


def _describe(error: BaseException, device: str) -> str:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return f"out of GPU memory on {device}: {first_line(error)}"
    if device_lost(error):
        return f"the GPU failed ({device}): {first_line(error)}"
    return f"{type(error).__name__}: {first_line(error)}"
