"""Running one shard in a worker: claim it in the database, check the worker can run it, stream
its records from the database through the prediction stream, write each block, finish.

Everything is idempotent: a shard run twice (a duplicate message, a worker presumed dead that
was not) leaves one row per frame, and only the worker holding a shard's lease can finish it.
Finishing the last shard ends the job in the same transaction. A failed attempt is recorded in
the database, which counts attempts, and the shard gets a new message if it has one left; a
shard this worker cannot run, or is asked to stop in the middle of, is given back (the attempt
not counted). Every database step waits out an unreachable database (`database_patience`).
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import torch

from ..errors import UserError, first_line
from ..pipeline.embeddings import EmbeddingPart, embedding_parts
from ..pipeline.provenance import code_version, now, software
from ..pipeline.regions import RegionRule
from ..pipeline.results import RunTotals
from ..pipeline.stream import predict_stream
from ..settings import Settings
from ..store.engine import patiently
from ..store.jobs import shard_records
from ..store.shards import (
    Claim,
    Failure,
    claim_shard,
    fail_shard,
    finish_shard,
    holds,
    pin_model_set,
    release_shard,
    renew_lease,
)
from ..store.store import Store
from . import messages

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..pipeline.predictor import Predictor
    from ..sequences.translation import KeptFrame
    from .worker import GpuWorker

log = logging.getLogger(__name__)
T = TypeVar("T")


class ShardRefused(UserError):
    """This worker cannot run the shard (another model set, a chunk size it has no classifier
    for): another worker may."""


class ShardRunner:
    def __init__(self, worker: GpuWorker, settings: Settings, predictor: Predictor) -> None:
        self.worker, self.settings, self.predictor = worker, settings, predictor
        self.store = Store(settings.database_url)
        self.device = predictor.provenance(predictor.chunk_sizes[0])["device"]
        self.shard_id: int | None = None  # the shard running now, for the heartbeat thread
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.worker.name

    def _in_session(self, operation: Callable[[Session], T], what: str) -> T:
        """`operation(session)` in a transaction, waiting out an unreachable database."""
        return patiently(
            lambda: self.store.transaction(operation), self.settings.database_patience, what
        )

    def renew_lease(self) -> None:
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
        chunk_size = claim.parameters["chunk_size"]
        predictor = self._predictor_for(claim)
        started, totals = now(), RunTotals()
        patience = self.settings.database_patience
        parts = patiently(lambda: self.store.shard_input(claim.shard_id), patience, "input")
        features = BlockFeatures(claim.parameters.get("embeddings"), predictor.feature_widths[0])
        blocks = predict_stream(
            predictor,
            shard_records(parts, claim.shard_id),
            chunk_size,
            first_index=claim.first_record,
            block_bases=claim.parameters["block_bases"],
            regions=RegionRule.from_json(claim.parameters.get("region_rule")),
            on_features=features.add if features.dtype else None,
        )
        for block in blocks:
            still_ours = self._in_session(
                lambda session: holds(session, claim.shard_id, self.name), "checking the shard"
            )
            if not still_ours:
                log.info("shard %d: cancelled or taken over; stopping", claim.shard_id)
                return {"shard": claim.shard_id, "ran": False}
            write = self.store.write_block
            patiently(
                functools.partial(write, claim.job_id, block, claim.shard_id, features.take()),
                patience,
                f"writing shard {claim.shard_id}",
            )
            totals.add(block)
            self._report(totals)
            if self.worker.stop_asked:
                log.info("shard %d: the worker is stopping; given back", claim.shard_id)
                self._give_back(claim, elsewhere=False)
                return {"shard": claim.shard_id, "ran": False}
        provenance = {
            "code_version": code_version(),
            "software": software(),
            "started": started,
            "finished": now(),
            **predictor.provenance(chunk_size),
            "counts": totals.counts(),
            "stage_seconds": totals.stage_seconds,
        }
        code = {"code_version": provenance["code_version"], "software": provenance["software"]}
        job_state = self._in_session(
            lambda session: finish_shard(session, claim.shard_id, self.name, provenance, code),
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
        chunk_size = claim.parameters["chunk_size"]
        if chunk_size not in self.predictor.chunk_sizes:
            raise ShardRefused(f"worker {self.name} has no classifier for {chunk_size} bp chunks")
        asked = claim.parameters["models"]
        predictor = self.predictor.with_attention(claim.parameters["attention"])
        models = predictor.provenance(chunk_size)["models"]
        if "sha256" in asked:  # submitted with its model files
            if messages.fingerprint(models) != asked["sha256"]:
                raise ShardRefused(
                    f"worker {self.name}'s model files are not the ones job {claim.job_id} was "
                    "submitted with (their sha256 differ)"
                )
        elif asked.get("demo", False) != self.predictor.demo:
            kind = "demo" if asked.get("demo") else "real"
            raise ShardRefused(
                f"the job asks for {kind} models; worker {self.name} has the other kind"
            )
        pinned = self._in_session(
            lambda session: pin_model_set(session, claim.job_id, models), "pinning the model set"
        )
        if messages.fingerprint(pinned) != messages.fingerprint(models):
            raise ShardRefused(
                f"worker {self.name}'s model files differ from the ones job {claim.job_id} "
                f"runs on (its first shard pinned model set "
                f"{messages.model_set_key(messages.fingerprint(pinned))})"
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
        again if it has an attempt left; a lost GPU also stops this worker, an exhausted one
        frees memory. Returns the message."""
        message = _describe(error, self.device)
        log.error("shard %d, attempt %d: %s", claim.shard_id, claim.attempt, message)
        log.debug("shard %d: the error's traceback", claim.shard_id, exc_info=error)
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        if device_lost(error):
            self.worker.device_lost = True
        delivery = self.settings.lease_seconds
        try:
            outcome = self._in_session(
                lambda session: fail_shard(session, claim.shard_id, self.name, message, delivery),
                f"recording the failure of shard {claim.shard_id}",
            )
        except UserError as store_error:  # still away: its lease runs out, the sweep requeues it
            log.error("shard %d: cannot record the failure: %s", claim.shard_id, store_error)
            return message
        if outcome == Failure.RETRY:
            self._deliver(claim, elsewhere=False)
        elif outcome == Failure.LAST:
            log.error("job %d failed: shard %d had no attempt left", claim.job_id, claim.shard_id)
        return message

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
        job = self.store.job(claim.job_id)
        queue = messages.job_queue_name(self.settings.queue, job.parameters, job.model_set)
        if elsewhere and queue in self.worker.queue_names():
            return  # sent back here it would come straight back: the sweep retries it later
        try:
            messages.deliver(self.worker.connection, queue, [claim.shard_id], fresh=True)
        except redis.exceptions.RedisError as error:
            log.warning("shard %d: not queued again (%s); the sweep will", claim.shard_id, error)


class BlockFeatures:
    """The features of the block being computed, as the database keeps them (a job asked for
    embeddings in `dtype`): the stream hands a block's features out before the block."""

    def __init__(self, dtype: str | None, nucleotide_width: int) -> None:
        self.dtype, self.nucleotide_width = dtype, nucleotide_width
        self.parts: list[EmbeddingPart] = []

    def add(self, _frames: Sequence[KeptFrame], features: torch.Tensor) -> None:
        self.parts += embedding_parts(features, self.nucleotide_width, self.dtype)

    def take(self) -> list[EmbeddingPart]:
        parts, self.parts = self.parts, []
        return parts


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
