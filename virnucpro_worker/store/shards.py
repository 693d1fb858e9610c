"""A shard's life in the database, which decides who runs what: claimed by one worker under a
lease that the worker renews, finished or failed by that worker, and the job finalized from
its shards. A message from Redis only says "look at shard N"; these rules say whether to run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from ..pipeline.outputs import DEMO_WARNING, run_json_text
from ..pipeline.regions import RegionRule
from .jobs import now, set_state
from .models import FINISHED, Job, Provenance, Shard, State


@dataclass(frozen=True)
class Claim:
    """What a worker needs to run a shard it has claimed."""

    shard_id: int
    job_id: int
    index: int
    first_record: int
    record_count: int
    attempt: int
    parameters: dict[str, Any]
    model_set: dict[str, Any] | None


def claim_shard(
    session: Session, shard_id: int, *, worker: str, host: str, device: str, lease: float
) -> Claim | None:
    """Take the shard if nobody else holds it: queued, running under a lease that ran out (its
    worker died), or running here (this worker's attempt whose failure the database could not
    record). None when it is finished, cancelled or held by another live worker."""
    stamp = now()
    taken = session.execute(
        update(Shard)
        .where(
            Shard.id == shard_id,
            or_(
                Shard.state == State.QUEUED,
                and_(
                    Shard.state == State.RUNNING,
                    or_(
                        Shard.heartbeat_at < stamp - timedelta(seconds=lease),
                        Shard.worker == worker,
                    ),
                ),
            ),
        )
        .values(
            state=State.RUNNING,
            attempts=Shard.attempts + 1,
            worker=worker,
            host=host,
            device=device,
            started_at=stamp,
            heartbeat_at=stamp,
            finished_at=None,
        )
    )
    if taken.rowcount != 1:
        return None
    shard = session.get(Shard, shard_id)
    job = session.get(Job, shard.job_id)
    if job.state == State.QUEUED:
        set_state(session, job, State.RUNNING)
    return Claim(
        shard.id,
        job.id,
        shard.index,
        shard.first_record,
        shard.record_count,
        shard.attempts,
        job.parameters,
        job.model_set,
    )


def renew_lease(session: Session, shard_id: int, worker: str) -> bool:
    """Extend the lease; False when the worker no longer holds the shard (it was cancelled,
    or given to another worker after this one fell silent)."""
    renewed = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.worker == worker, Shard.state == State.RUNNING)
        .values(heartbeat_at=now())
    )
    return renewed.rowcount == 1


def holds(session: Session, shard_id: int, worker: str) -> bool:
    """Whether `worker` still runs the shard (and its job goes on)."""
    row = session.execute(
        select(Shard.state, Shard.worker, Job.state).join(Job).where(Shard.id == shard_id)
    ).one()
    return row[0] == State.RUNNING and row[1] == worker and row[2] == State.RUNNING


def pin_model_set(session: Session, job_id: int, model_set: dict[str, Any]) -> dict[str, Any]:
    """The job's model set: the first shard to run sets it; later shards must match it."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.model_set.is_(None)).values(model_set=model_set)
    )
    return session.scalar(select(Job.model_set).where(Job.id == job_id))


def finish_shard(session: Session, shard_id: int, worker: str, provenance: dict[str, Any]) -> bool:
    finished = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.worker == worker, Shard.state == State.RUNNING)
        .values(state=State.SUCCEEDED, finished_at=now(), provenance=provenance, error=None)
    )
    if finished.rowcount != 1:
        return False
    job_id = session.scalar(select(Shard.job_id).where(Shard.id == shard_id))
    session.execute(update(Job).where(Job.id == job_id).values(shards_done=Job.shards_done + 1))
    return True


def fail_shard(session: Session, shard_id: int, worker: str, error: str, attempts: int) -> bool:
    """Record a failed attempt: the shard waits for another (queued) until it has had
    `attempts`, then it failed. Returns whether that was its last attempt."""
    shard = session.get(Shard, shard_id)
    if shard.worker != worker or shard.state != State.RUNNING:
        return False
    last = shard.attempts >= attempts
    shard.state = State.FAILED if last else State.QUEUED
    shard.error = error
    shard.finished_at = now() if last else None
    return last


def cancel_job(session: Session, job: Job) -> None:
    if job.state not in FINISHED:
        set_state(session, job, State.CANCELLED, "cancelled")


def unfinished_jobs(session: Session) -> list[int]:
    query = select(Job.id).where(Job.state.in_([State.QUEUED, State.RUNNING])).order_by(Job.id)
    return list(session.scalars(query))


def finalize(session: Session, job_id: int, lease: float, code: dict[str, Any]) -> State:
    """Settle the job from its shards (once every shard has ended; idempotent): succeeded with
    its run.json, or failed naming the first shard that failed. `code` holds the finalizer's
    code_version and software. A shard still 'running' under an expired lease was abandoned."""
    job = session.get(Job, job_id, with_for_update=True)
    if job.state in FINISHED:
        return State(job.state)
    shards = list(
        session.scalars(select(Shard).where(Shard.job_id == job_id).order_by(Shard.index))
    )
    stale = now() - timedelta(seconds=lease)
    for shard in shards:
        if shard.state == State.RUNNING and shard.heartbeat_at < stale:
            shard.state, shard.finished_at = State.FAILED, now()
            shard.error = f"abandoned: worker {shard.worker} stopped answering"
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
    run = job_run_record(job, shards, code)
    session.merge(Provenance(job_id=job.id, run_json=run_json_text(run)))
    job.records_done, job.frames_done = run["counts"]["records"], run["counts"]["kept_frames"]
    job.shards_done = len(shards)
    set_state(session, job, State.SUCCEEDED)
    return State.SUCCEEDED


def job_run_record(job: Job, shards: list[Shard], code: dict[str, Any]) -> dict[str, Any]:
    """run.json of a queued job: the first shard's models, backend and kernels (every shard
    ran the job's one model set), counts and timings summed, and every shard's worker."""
    first = shards[0].provenance
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for shard in shards:
        for name, value in shard.provenance["counts"].items():
            counts[name] = counts.get(name, 0) + value
        for name, value in shard.provenance["stage_seconds"].items():
            seconds[name] = round(seconds.get(name, 0.0) + value, 3)
    record = {
        "tool": "virnucpro-worker",
        **code,
        "started": job.started_at.isoformat(timespec="milliseconds"),
        "finished": now().isoformat(timespec="milliseconds"),
        "job_id": job.id,
        "label": job.label,
        "input": {"path": job.input_name, "bytes": job.input_bytes, "sha256": job.input_sha256},
        "chunk_size": job.parameters["chunk_size"],
        "region_rule": RegionRule.from_json(job.parameters.get("region_rule")).to_json(),
        **{
            key: first[key]
            for key in ("attention_backend", "kernels", "dtype", "device", "demo_models", "models")
        },
        "counts": counts,
        "stage_seconds": seconds,
        "shards": [
            {
                "index": shard.index,
                "records": shard.record_count,
                "attempts": shard.attempts,
                "worker": shard.worker,
                "host": shard.host,
                "device": shard.device,
                "kernels": shard.provenance["kernels"],
                "started": shard.provenance["started"],
                "finished": shard.provenance["finished"],
            }
            for shard in shards
        ],
    }
    if first["demo_models"]:
        record["warning"] = DEMO_WARNING
    return record
