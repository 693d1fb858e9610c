"""A shard's life in the database, which alone decides who runs what and when a job ends.

Every queued or running shard is leased (`Shard.lease_expires_at`): to the worker running it,
which renews the lease with each heartbeat, or, while it is queued, to its message for a grace
period. A lease that ran out is acted on by `sweep`, which any worker runs: a running shard
whose worker stopped answering is queued again (or fails, out of attempts), a queued one is
handed back to be delivered again. A message from Redis only says "look at shard N"; these
rules say whether to run it. Attempts are counted here only (`claim_shard`), against the
number stored with the job at submit.

`predict --db` runs its job, of one shard, through the same steps in its own process, without
Redis: `create_local_job` stores the job with its shard claimed by the process and no lease (the
sweep leaves it alone), `commit_block` writes each block with the totals so far (only while the
process holds the shard), and `finish_shard` or `fail_shard` end it. A run killed is run again
with the same command: `local_runs` finds the job and `take_over` gives its shard to the new
process, which goes on from the last committed block.

The job ends in the transaction that ends its last shard, whoever ends it: `finish_shard`,
`fail_shard`, `sweep`; `cancel_job` wins over all of them. Every transaction that changes both
a job and its shards locks the job row first (`_lock_job`), then the shards: one order, so
that they wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from ..models.model_files import ModelSet
from ..pipeline.embeddings import EmbeddingPart
from ..pipeline.outputs import run_json_text
from ..pipeline.parameters import JobParameters
from ..pipeline.provenance import job_run_record
from ..pipeline.results import BlockResult
from ..sequences.fasta import FastaRecord
from .jobs import InputFile, create_job, now, set_state
from .models import FINISHED, Job, Provenance, Shard, State
from .results import write_block

UNFINISHED = (State.QUEUED, State.RUNNING)


@dataclass(frozen=True)
class Claim:
    """What a worker needs to run a shard it has claimed."""

    shard_id: int
    job_id: int
    first_record: int
    attempt: int
    parameters: JobParameters


@dataclass(frozen=True)
class Delivery:
    """A queued shard whose message must reach the queue of its job's model set."""

    shard_id: int
    parameters: JobParameters
    model_set: ModelSet | None  # pinned by the job's first shard


@dataclass(frozen=True)
class LocalRun:
    """A `predict --db` job: its shard, who holds it, and what it has committed."""

    job_id: int
    shard_id: int
    parameters: dict[str, Any]
    worker: str
    host: str | None
    heartbeat_at: datetime | None
    records_done: int
    # The run's identity and its totals at its last committed block; None before the first.
    progress: dict[str, Any] | None

    def held_by(self, worker: str, host: str) -> LocalRun:
        return replace(self, worker=worker, host=host)


class Failure(StrEnum):
    """What a failed attempt did to its shard."""

    RETRY = "queued for another attempt"
    LAST = "failed: no attempt left"
    LOST = "no longer this worker's"


def _lock_job(session: Session, job_id: int) -> Job:
    """The job row, locked until the transaction ends (PostgreSQL; SQLite locks the whole
    database for a writer). Always taken before any of its shards."""
    return session.get(Job, job_id, with_for_update=True, populate_existing=True)


def _job_of(session: Session, shard_id: int) -> Job | None:
    job_id = session.scalar(select(Shard.job_id).where(Shard.id == shard_id))
    return None if job_id is None else _lock_job(session, job_id)


def claim_shard(
    session: Session, shard_id: int, *, worker: str, host: str, device: str, lease: float
) -> Claim | None:
    """Take the shard if it is queued and its job goes on: one more attempt, leased to
    `worker` for `lease` seconds. None when it is finished, cancelled, unknown or leased to a
    worker (the sweep queues it again if that lease runs out)."""
    job = _job_of(session, shard_id)
    if job is None or job.state not in UNFINISHED:
        return None
    stamp = now()
    taken = session.execute(
        update(Shard)
        .where(
            Shard.id == shard_id,
            Shard.state == State.QUEUED,
            Shard.attempts < job.shard_attempts,
        )
        .values(
            state=State.RUNNING,
            attempts=Shard.attempts + 1,
            worker=worker,
            host=host,
            device=device,
            started_at=stamp,
            heartbeat_at=stamp,
            lease_expires_at=stamp + timedelta(seconds=lease),
            finished_at=None,
        )
    )
    if taken.rowcount != 1:
        return None
    if job.state == State.QUEUED:
        set_state(session, job, State.RUNNING)
    shard = session.get(Shard, shard_id, populate_existing=True)
    return Claim(
        shard.id,
        job.id,
        shard.first_record,
        shard.attempts,
        JobParameters.from_json(job.parameters),
    )


def create_local_job(
    session: Session,
    records: Iterable[FastaRecord],
    *,
    parameters: JobParameters,
    input_file: InputFile,
    worker: str,
    host: str,
) -> LocalRun:
    """A `predict --db` job: one shard, claimed by `worker` from the start, with no lease and
    the one attempt `parameters` give (another is taken only by `take_over`)."""
    job = create_job(
        session,
        records,
        parameters=parameters,
        input_file=input_file,
        shard_chunks=None,
        state=State.RUNNING,
    )
    shard = session.scalar(select(Shard).where(Shard.job_id == job.id))
    stamp = now()
    shard.worker, shard.host, shard.attempts = worker, host, 1
    shard.started_at = shard.heartbeat_at = stamp
    return _local_run(job, shard)


def _local_run(job: Job, shard: Shard) -> LocalRun:
    return LocalRun(
        job.id,
        shard.id,
        job.parameters,
        shard.worker,
        shard.host,
        shard.heartbeat_at,
        job.records_done,
        shard.provenance,
    )


def local_runs(session: Session, input_sha256: str, input_bytes: int) -> list[LocalRun]:
    """The unfinished `predict --db` jobs of this input, newest first: a running job whose one
    shard is held with no lease."""
    rows = session.execute(
        select(Job, Shard)
        .join(Shard)
        .where(
            Job.state == State.RUNNING,
            Job.input_sha256 == input_sha256,
            Job.input_bytes == input_bytes,
            Job.shards == 1,
            Shard.state == State.RUNNING,
            Shard.lease_expires_at.is_(None),
            Shard.worker.is_not(None),
        )
        .order_by(Job.id.desc())
    )
    return [_local_run(job, shard) for job, shard in rows]


def take_over(session: Session, run: LocalRun, worker: str, host: str) -> bool:
    """Give the shard of a `predict --db` run whose process has gone to `worker`: one more
    attempt, its committed blocks kept. False when it has ended or changed hands meanwhile."""
    job = _lock_job(session, run.job_id)
    if job is None or job.state != State.RUNNING:
        return False
    taken = session.execute(
        update(Shard)
        .where(Shard.id == run.shard_id, Shard.state == State.RUNNING, Shard.worker == run.worker)
        .values(
            attempts=Shard.attempts + 1, worker=worker, host=host, heartbeat_at=now(), error=None
        )
    )
    return taken.rowcount == 1


def commit_block(
    session: Session,
    job_id: int,
    shard_id: int,
    worker: str,
    block: BlockResult,
    *,
    embeddings: Sequence[EmbeddingPart] = (),
    progress: dict[str, Any] | None = None,
) -> bool:
    """A block of the shard `worker` runs: its rows (replacing any its records had), its
    frames' features for a job asked for them, and the job's and the shard's counters, in one
    transaction, and only while the job goes on and `worker` still holds the shard. False, and
    nothing written, otherwise (the job was cancelled, or the shard taken over: a worker that
    woke after its lease ran out must not write over the rows of the one that took its place).
    `predict --db` also keeps its run's `progress` (its identity and totals so far) with the
    shard, so that a run killed after this block goes on from the next."""
    job = _lock_job(session, job_id)
    if job.state != State.RUNNING:
        return False
    values: dict[str, Any] = {
        "heartbeat_at": now(),
        "frames_done": Shard.frames_done + len(block.frames),
    }
    if progress is not None:
        values |= {"device": progress["identity"]["device"], "provenance": progress}
    held = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.worker == worker, Shard.state == State.RUNNING)
        .values(values)
    )
    if held.rowcount != 1:
        return False
    write_block(session.connection(), job_id, block, embeddings)
    job.records_done += len(block.records)
    job.frames_done += len(block.frames)
    return True


def renew_lease(session: Session, shard_id: int, worker: str, lease: float) -> bool:
    """Extend the lease; False when the worker no longer holds the shard (it was cancelled,
    or queued again after this worker fell silent)."""
    stamp = now()
    renewed = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.worker == worker, Shard.state == State.RUNNING)
        .values(heartbeat_at=stamp, lease_expires_at=stamp + timedelta(seconds=lease))
    )
    return renewed.rowcount == 1


def pin_model_set(session: Session, job_id: int, model_set: dict[str, Any]) -> dict[str, Any]:
    """The job's model set: the first shard to run sets it; later shards must match it."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.model_set.is_(None)).values(model_set=model_set)
    )
    return session.scalar(select(Job.model_set).where(Job.id == job_id))


def finish_shard(
    session: Session,
    shard_id: int,
    worker: str,
    provenance: dict[str, Any],
    run: dict[str, Any] | None = None,
) -> State | None:
    """The worker's attempt succeeded: the shard did (`provenance`: its run record), and the
    job with it if it was the last (`run`: the job's run.json when the finisher has it whole,
    as `predict --db` does). Returns the job's state, None when the shard was no longer this
    worker's (cancelled, or run again elsewhere)."""
    job = _job_of(session, shard_id)
    if job is None:
        return None
    finished = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.worker == worker, Shard.state == State.RUNNING)
        .values(
            state=State.SUCCEEDED,
            finished_at=now(),
            provenance=provenance,
            error=None,
            lease_expires_at=None,
        )
    )
    if finished.rowcount != 1:
        return None
    job.shards_done += 1  # counts succeeded shards exactly: a shard succeeds once
    if job.shards_done < job.shards:
        return State(job.state)
    return _settle(session, job, run)


def fail_shard(
    session: Session, shard_id: int, worker: str, error: str, delivery: float
) -> Failure:
    """Record the worker's failed attempt: the shard is queued again (its message has
    `delivery` seconds to arrive) while its job allows more attempts; its last one fails the
    job at once."""
    job = _job_of(session, shard_id)
    shard = session.get(Shard, shard_id, populate_existing=True)
    if shard.worker != worker or shard.state != State.RUNNING or job.state in FINISHED:
        return Failure.LOST
    shard.error = error
    if shard.attempts < job.shard_attempts:
        shard.state = State.QUEUED
        shard.lease_expires_at = now() + timedelta(seconds=delivery)
        return Failure.RETRY
    shard.state, shard.finished_at, shard.lease_expires_at = State.FAILED, now(), None
    _settle(session, job)
    return Failure.LAST


def release_shard(session: Session, shard_id: int, worker: str, delivery: float) -> bool:
    """Give back a shard this worker claimed but cannot run (another model set): queued again,
    the attempt not counted (its job is queued again if none of its shards has started).
    Returns whether it was this worker's to give back."""
    job = _job_of(session, shard_id)
    released = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.worker == worker, Shard.state == State.RUNNING)
        .values(
            state=State.QUEUED,
            attempts=Shard.attempts - 1,
            lease_expires_at=now() + timedelta(seconds=delivery),
        )
    )
    started = exists().where(
        Shard.job_id == job.id, or_(Shard.state != State.QUEUED, Shard.attempts > 0)
    )
    if job.state == State.RUNNING and not session.scalar(select(started)):
        job.state, job.started_at = State.QUEUED, None
    return released.rowcount == 1


def cancel_job(session: Session, job_id: int) -> Job | None:
    """Cancel the job unless it has ended: its queued and running shards are cancelled with it
    (a running one stops at its next block). None for an unknown job."""
    job = _lock_job(session, job_id)
    if job is not None and job.state not in FINISHED:
        set_state(session, job, State.CANCELLED, "cancelled")
    return job


def sweep(session: Session, every_queued: bool = False) -> list[Delivery]:
    """Act on the leases that ran out, and settle the jobs whose shards have all ended:
    a running shard whose worker stopped renewing its lease is queued again, or fails its job
    when it had no attempt left. Returns the queued shards whose delivery is due (with
    `every_queued`, all queued shards): the caller queues again those whose message is no
    longer waiting in Redis, then `postpone`s them."""
    stamp = now()
    expired = select(Shard.job_id).where(
        Shard.state == State.RUNNING, Shard.lease_expires_at < stamp
    )
    ended = select(Job.id).where(
        Job.state.in_(UNFINISHED),
        ~exists().where(Shard.job_id == Job.id, Shard.state.in_(UNFINISHED)),
    )
    for job_id in sorted(set(session.scalars(expired)) | set(session.scalars(ended))):
        job = _lock_job(session, job_id)  # in id order: sweeps never wait on each other in a cycle
        if job.state in FINISHED:
            continue
        _expire_leases(session, job, stamp)
        _settle(session, job)
    due = [Shard.state == State.QUEUED, Job.state.in_(UNFINISHED)]
    if not every_queued:
        due.append(or_(Shard.lease_expires_at.is_(None), Shard.lease_expires_at < stamp))
    rows = session.execute(
        select(Shard.id, Job.parameters, Job.model_set)
        .join(Job)
        .where(and_(*due))
        .order_by(Shard.job_id, Shard.index)
    )
    return [
        Delivery(
            shard_id,
            JobParameters.from_json(parameters),
            None if model_set is None else ModelSet.of_run(model_set),
        )
        for shard_id, parameters, model_set in rows
    ]


def _expire_leases(session: Session, job: Job, stamp: datetime) -> None:
    shards = session.scalars(
        select(Shard).where(
            Shard.job_id == job.id, Shard.state == State.RUNNING, Shard.lease_expires_at < stamp
        )
    )
    for shard in shards:
        shard.error = (
            f"abandoned: worker {shard.worker} stopped renewing its lease (ran out at "
            f"{shard.lease_expires_at.isoformat(timespec='seconds')})"
        )
        if shard.attempts < job.shard_attempts:
            shard.state, shard.lease_expires_at = State.QUEUED, None  # delivered at once
        else:
            shard.state, shard.finished_at, shard.lease_expires_at = State.FAILED, now(), None


def postpone(session: Session, shard_ids: Sequence[int], delivery: float) -> None:
    """The shards' messages were just queued: give them `delivery` seconds to arrive."""
    if shard_ids:
        session.execute(
            update(Shard)
            .where(Shard.id.in_(shard_ids), Shard.state == State.QUEUED)
            .values(lease_expires_at=now() + timedelta(seconds=delivery))
        )


def _settle(session: Session, job: Job, run: dict[str, Any] | None = None) -> State:
    """End the locked job if its shards say so (idempotent): failed as soon as a shard has
    failed, naming it; succeeded, with its run.json (`run`, else its shards' run records
    merged), once every shard has."""
    if job.state in FINISHED:
        return State(job.state)
    shards = list(
        session.scalars(select(Shard).where(Shard.job_id == job.id).order_by(Shard.index))
    )
    failed = next((shard for shard in shards if shard.state == State.FAILED), None)
    if failed is not None:
        error = (
            f"shard {failed.index} (records {failed.first_record + 1}-"
            f"{failed.first_record + failed.record_count}) failed after {failed.attempts} "
            f"attempt{'s' if failed.attempts != 1 else ''}: {failed.error}"
        )
        set_state(session, job, State.FAILED, error)
        return State.FAILED
    if any(shard.state != State.SUCCEEDED for shard in shards):
        return State(job.state)  # not over yet
    run = run or job_run_record(
        [shard.provenance for shard in shards],
        [_placement(shard) for shard in shards],
        started=job.started_at.isoformat(timespec="milliseconds"),
        input_info={"path": job.input_name, "bytes": job.input_bytes, "sha256": job.input_sha256},
        extra={"job_id": job.id, "label": job.label},
    )
    session.merge(Provenance(job_id=job.id, run_json=run_json_text(run)))
    job.records_done, job.frames_done = run["counts"]["records"], run["counts"]["kept_frames"]
    job.shards_done = len(shards)
    set_state(session, job, State.SUCCEEDED)
    return State.SUCCEEDED


def _placement(shard: Shard) -> dict[str, Any]:
    """Where and how often a shard ran, for run.json."""
    return {
        "index": shard.index,
        "records": shard.record_count,
        "attempts": shard.attempts,
        "worker": shard.worker,
        "host": shard.host,
        "device": shard.device,
    }
