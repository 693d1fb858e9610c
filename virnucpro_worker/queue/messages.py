"""What goes through Redis, and nothing else: RQ jobs of two allow-listed functions, each
taking one database id, serialized as JSON. A worker trusts the database, not the message:
the id says which shard to look at, the database says whether and what to run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Dependency, Job, NoSuchJobError
from rq.serializers import JSONSerializer

from ..errors import UserError
from ..redact import redact_text, redact_url

RUN_SHARD = "virnucpro_worker.queue.tasks.run_shard"
FINALIZE_JOB = "virnucpro_worker.queue.tasks.finalize_job"
ALLOWED_FUNCTIONS = (RUN_SHARD, FINALIZE_JOB)
SERIALIZER = JSONSerializer


class RedisUnavailable(UserError):
    """Redis cannot be reached."""


def shard_message_id(shard_id: int) -> str:
    return f"virnucpro-shard-{shard_id}"


def finalize_message_id(job_id: int) -> str:
    return f"virnucpro-job-{job_id}"


def queue_name(base: str, chunk_size: int) -> str:
    """Shards go to one queue per chunk size: a worker listens on the sizes it can classify."""
    return f"{base}-{chunk_size}"


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30, socket_keepalive=True)


@contextlib.contextmanager
def redis_errors(url: str) -> Iterator[None]:
    """Connection errors as one line naming the server, its password hidden."""
    try:
        yield
    except redis.exceptions.RedisError as error:
        message = redact_text(f"Redis {redact_url(url)}: {error}", url)
        raise RedisUnavailable(message) from None


def queue(connection: redis.Redis, base: str, chunk_size: int) -> Queue:
    return Queue(queue_name(base, chunk_size), connection=connection, serializer=SERIALIZER)


def enqueue_job(
    queue: Queue,
    job_id: int,
    shard_ids: Sequence[int],
    *,
    attempts: int,
    shard_timeout: int,
) -> None:
    """One RQ job per shard, and the job's finalize, which runs once every shard has ended,
    failed or not (it settles the job from the database)."""
    shards = [_shard_data(queue, shard_id, attempts, shard_timeout) for shard_id in shard_ids]
    with queue.connection.pipeline() as pipeline:
        queue.enqueue_many(shards, pipeline=pipeline)
        pipeline.execute()
    enqueue_finalize(queue, job_id, [shard_message_id(shard_id) for shard_id in shard_ids])


def enqueue_shard(queue: Queue, shard_id: int, *, attempts: int, shard_timeout: int) -> None:
    forget(queue.connection, shard_message_id(shard_id))
    queue.enqueue_many([_shard_data(queue, shard_id, attempts, shard_timeout)])


def enqueue_finalize(queue: Queue, job_id: int, waits_for: Sequence[str]) -> None:
    forget(queue.connection, finalize_message_id(job_id))
    present = [message for message in waits_for if message_exists(queue.connection, message)]
    queue.enqueue_call(
        FINALIZE_JOB,
        args=(job_id,),
        job_id=finalize_message_id(job_id),
        depends_on=Dependency(present, allow_failure=True) if present else None,
        timeout=600,
        result_ttl=86_400,
        failure_ttl=7 * 86_400,
        description=f"finalize job {job_id}",
    )


def _shard_data(queue: Queue, shard_id: int, attempts: int, shard_timeout: int) -> Any:
    return Queue.prepare_data(
        RUN_SHARD,
        args=(shard_id,),
        job_id=shard_message_id(shard_id),
        timeout=shard_timeout,
        result_ttl=86_400,
        failure_ttl=7 * 86_400,
        retry=Retry(max=attempts - 1) if attempts > 1 else None,
        description=f"shard {shard_id}",
    )


LIVE = ("queued", "started", "deferred", "scheduled")


def message_exists(connection: redis.Redis, message_id: str) -> bool:
    """Whether Redis holds an RQ job of that id that will still run (or runs now)."""
    try:
        job = Job.fetch(message_id, connection=connection, serializer=SERIALIZER)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in LIVE


def forget(connection: redis.Redis, message_id: str) -> None:
    """Delete an ended RQ job of that id (failed, say), so that it can be queued again."""
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(message_id, connection=connection, serializer=SERIALIZER).delete()


def cancel_messages(connection: redis.Redis, message_ids: Sequence[str]) -> None:
    """Cancel the queued RQ jobs among `message_ids` (running ones stop at their next block)."""
    for message_id in message_ids:
        with contextlib.suppress(NoSuchJobError):
            job = Job.fetch(message_id, connection=connection, serializer=SERIALIZER)
            if job.get_status(refresh=False) in ("queued", "deferred", "scheduled"):
                job.cancel()
