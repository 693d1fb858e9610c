"""Running one shard in a worker: claim it in the database, check the worker can run it, stream
its records from the database through the prediction stream, write each block, finish.

Everything is idempotent: a shard run twice (a retry, a duplicate message, a worker presumed
dead that was not) leaves one row per frame, and only the worker holding a shard's lease can
finish it.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

import torch

from ..errors import UserError, first_line
from ..pipeline.provenance import code_version, now, software
from ..pipeline.results import RunTotals
from ..pipeline.stream import predict_stream
from ..settings import Settings
from ..store.jobs import shard_records
from ..store.shards import (
    Claim,
    claim_shard,
    fail_shard,
    finalize,
    finish_shard,
    holds,
    pin_model_set,
    renew_lease,
)
from ..store.store import Store

if TYPE_CHECKING:
    from ..pipeline.predictor import Predictor
    from .worker import GpuWorker

log = logging.getLogger(__name__)


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

    def renew_lease(self) -> None:
        with self._lock:
            shard_id = self.shard_id
        if shard_id is not None:
            with self.store.session() as session:
                renew_lease(session, shard_id, self.name)

    def run(self, shard_id: int) -> dict[str, Any]:
        with self.store.session() as session:
            claim = claim_shard(
                session,
                shard_id,
                worker=self.name,
                host=socket.gethostname(),
                device=self.device,
                lease=self.settings.lease_seconds,
            )
        if claim is None:
            log.info("shard %d: finished, cancelled or running elsewhere; nothing to do", shard_id)
            return {"shard": shard_id, "ran": False}
        with self._lock:
            self.shard_id = shard_id
        try:
            return self._run(claim)
        except Exception as error:
            self._failed(claim, error)
            raise
        finally:
            with self._lock:
                self.shard_id = None

    def _run(self, claim: Claim) -> dict[str, Any]:
        chunk_size = claim.parameters["chunk_size"]
        predictor = self._predictor_for(claim)
        started, totals = now(), RunTotals()
        with self.store.engine.connect() as connection:
            records = shard_records(connection, claim.shard_id)
            blocks = predict_stream(
                predictor,
                records,
                chunk_size,
                first_index=claim.first_record,
                block_bases=claim.parameters["block_bases"],
            )
            for block in blocks:
                with self.store.session() as session:
                    if not holds(session, claim.shard_id, self.name):
                        log.info("shard %d: cancelled or taken over; stopping", claim.shard_id)
                        return {"shard": claim.shard_id, "ran": False}
                self.store.write_block(claim.job_id, block, claim.shard_id)
                totals.add(block)
                self._report(totals)
        provenance = {
            "code_version": code_version(),
            "software": software(),
            "started": started,
            "finished": now(),
            **predictor.provenance(chunk_size),
            "counts": totals.counts(),
            "stage_seconds": totals.stage_seconds,
        }
        with self.store.session() as session:
            finish_shard(session, claim.shard_id, self.name, provenance)
        return {"shard": claim.shard_id, "ran": True, "frames": totals.kept_frames}

    def _predictor_for(self, claim: Claim) -> Predictor:
        """The worker's models through the job's backend, if they are the job's models."""
        chunk_size = claim.parameters["chunk_size"]
        if chunk_size not in self.predictor.chunk_sizes:
            raise ShardRefused(f"worker {self.name} has no classifier for {chunk_size} bp chunks")
        asked = claim.parameters["models"]
        if asked.get("demo", False) != self.predictor.demo:
            kind = "demo" if asked.get("demo") else "real"
            raise ShardRefused(
                f"the job asks for {kind} models; worker {self.name} has the other kind"
            )
        predictor = self.predictor.with_attention(claim.parameters["attention"])
        models = predictor.provenance(chunk_size)["models"]
        with self.store.session() as session:
            pinned = pin_model_set(session, claim.job_id, models)
        if fingerprint(pinned) != fingerprint(models):
            raise ShardRefused(
                f"worker {self.name}'s model files differ from the ones job {claim.job_id} "
                f"runs on (sha256 {fingerprint(models)} against {fingerprint(pinned)})"
            )
        return predictor

    def _report(self, totals: RunTotals) -> None:
        """Progress in the RQ job's meta (the database's counters move with each block)."""
        from rq import get_current_job

        job = get_current_job()
        if job is not None:
            job.meta.update(records_done=totals.records, frames_done=totals.kept_frames)
            job.save_meta()

    def _failed(self, claim: Claim, error: Exception) -> None:
        """Record the attempt; a lost GPU also stops this worker, an exhausted one frees memory."""
        message = _describe(error, self.device)
        log.error("shard %d, attempt %d: %s", claim.shard_id, claim.attempt, message)
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        if device_lost(error):
            self.worker.device_lost = True
        try:
            with self.store.session() as session:
                fail_shard(
                    session, claim.shard_id, self.name, message, self.settings.shard_attempts
                )
        except Exception as store_error:  # the database is away: the retry finds the shard ours
            log.error(
                "shard %d: cannot record the failure: %s", claim.shard_id, first_line(store_error)
            )

    def finalize(self, job_id: int) -> str:
        code = {"code_version": code_version(), "software": software()}
        with self.store.session() as session:
            return str(finalize(session, job_id, self.settings.lease_seconds, code))


def fingerprint(models: dict[str, Any]) -> dict[str, Any]:
    """The sha256 of every model file of a provenance `models` entry (paths differ by host)."""
    return {
        "esm2": models["esm2"]["sha256"],
        "dnabert_s": models["dnabert_s"]["files"],
        "classifier": models["classifier"]["sha256"],
    }


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
