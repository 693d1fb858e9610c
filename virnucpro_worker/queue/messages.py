"""What goes through Redis, and nothing else: RQ jobs of one allow-listed function taking one
shard id, serialized as JSON, on the queue of the model set and chunk size the shard's job asks
for. A worker trusts the database, not the message: the id says which shard to look at, the
database says whether and what to run.

Workers read every message as a `ShardMessage`: a message that is anything else is refused
(logged once and deleted, never retried), and whatever else an allowed message carries
(callbacks, webhooks, retries, repeats, dependencies, time limits) is dropped before RQ sees it,
in every path that reads a message (dequeue, registry cleanup, failure handling).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, NoSuchJobError
from rq.serializers import JSONSerializer

from ..errors import UserError
from ..models.model_files import ModelSet
from ..pipeline.parameters import JobParameters
from ..redact import redact_text, redact_url
from ..store.models import Job as StoredJob

log = logging.getLogger(__name__)

RUN_SHARD = "virnucpro_worker.queue.tasks.run_shard"
ALLOWED_FUNCTIONS = (RUN_SHARD,)
SERIALIZER = JSONSerializer
RESULT_TTL = 86_400  # seconds RQ keeps a message that ran (the database keeps the record)
FAILURE_TTL = 7 * 86_400
_MESSAGE_ID = re.compile(r"virnucpro-shard-(\d+)(?:-[0-9a-f]+)?")
_RQ_ID = re.compile(rb"[A-Za-z0-9_-]+")


class RedisUnavailable(UserError):
    """Redis cannot be reached."""


def shard_message_id(shard_id: int, fresh: bool = False) -> str:
    """The first message of a shard has a fixed id; later deliveries (a retry, a sweep) get a
    fresh one, so that they never overwrite a message that a worker may still hold."""
    suffix = f"-{secrets.token_hex(4)}" if fresh else ""
    return f"virnucpro-shard-{shard_id}{suffix}"


def shard_of(message_id: str) -> int | None:
    match = _MESSAGE_ID.fullmatch(message_id)
    return int(match.group(1)) if match else None


# Queues: one per chunk size and model set ------------------------------------------------------


def queue_name(base: str, chunk_size: int, model_set: str) -> str:
    """Shards go to one queue per chunk size and model set ("demo", "real", or the files'
    `ModelSet.key`): a worker listens on those it can run."""
    return f"{base}-{chunk_size}-{model_set}"


def job_model_set(parameters: JobParameters, pinned: ModelSet | None) -> str:
    """The model set a job's shards wait for: the files its first shard ran on once pinned,
    else the ones it asks for (its files, or demo or real models)."""
    return parameters.models.key if pinned is None else pinned.key


def job_queue_name(base: str, parameters: JobParameters, pinned: ModelSet | None) -> str:
    return queue_name(base, parameters.chunk_size, job_model_set(parameters, pinned))


def queue_of_job(base: str, job: StoredJob) -> str:
    """The queue a stored job's shards wait on now."""
    return job_queue_name(base, JobParameters.from_json(job.parameters), pinned_model_set(job))


def pinned_model_set(job: StoredJob) -> ModelSet | None:
    """The model set the job's first shard ran on, once one has run."""
    return None if job.model_set is None else ModelSet.of_run(job.model_set)


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


# Reading a message ----------------------------------------------------------------------------


class RefusedMessage(NoSuchJobError):
    """A message that is not a shard id. A NoSuchJobError: every RQ path that meets one goes on
    as if it were not there (and it no longer is: `ShardMessage.fetch` deleted it)."""


def refusal(job: Job) -> str | None:
    """Why a message must not run, or None: only the allow-listed function, with one id."""
    try:
        name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except Exception as error:  # not JSON, or not an RQ job at all
        return f"cannot read the message ({type(error).__name__})"
    if name not in ALLOWED_FUNCTIONS or instance is not None:
        return f"{name!r} is not a virnucpro function"
    if kwargs or len(args) != 1 or type(args[0]) is not int:
        return "a virnucpro message carries exactly one integer id"
    return None


class ShardMessage(Job):
    """An RQ job read as a shard id and nothing else."""

    def restore(self, raw_data: Any) -> None:
        try:
            super().restore(raw_data)
        except Exception as error:  # a field RQ cannot parse (a date, a number, the encoding)
            raise RefusedMessage(f"malformed ({type(error).__name__}: {error})") from None
        reason = refusal(self)
        if reason is not None:
            raise RefusedMessage(reason)
        self._drop_options()

    def _drop_options(self) -> None:
        """Forget whatever the message asks RQ to do besides running it."""
        self._success_callback_name = None
        self._failure_callback_name = None
        self._stopped_callback_name = None
        self.webhooks = []
        self._dependency_ids = []
        self.allow_dependency_failures = None
        self.retries_left = self.retry_intervals = self.number_of_retries = None
        self.repeats_left = self.repeat_intervals = None
        self.enqueue_at_front, self.enqueue_at_front_on_retry = None, False
        self.group_id = self.ttl = None
        self.timeout = None  # the worker's own limit applies (GpuWorker.execute_job)
        self.result_ttl, self.failure_ttl = RESULT_TTL, FAILURE_TTL

    @classmethod
    def fetch(cls, id: str, connection: redis.Redis | None = None, serializer=None) -> Job:
        try:
            return super().fetch(id, connection=connection, serializer=serializer)
        except RefusedMessage as refused:
            _discard(connection, cls.key_for(id), id, str(refused))
            raise
        except redis.exceptions.ResponseError as error:  # WRONGTYPE: not a hash at all
            _discard(connection, cls.key_for(id), id, f"not an RQ job ({error})")
            raise RefusedMessage(str(error)) from None
        except ValueError as error:  # an id RQ does not accept
            _discard(connection, f"rq:job:{id}", id, f"bad id ({error})")
            raise RefusedMessage(str(error)) from None


def _discard(connection: redis.Redis, key: str | bytes, shown: Any, reason: str) -> None:
    log.warning("refused message %r: %s; deleted", shown, reason)
    connection.delete(key)


class ShardQueue(Queue):
    """An RQ queue of shard messages: ids that are not RQ ids are dropped as they are taken,
    and no message has dependents to enqueue."""

    job_class = ShardMessage

    def enqueue_dependents(self, job: Job, *args: Any, **kwargs: Any) -> None:
        """Shard messages have none (a planted dependents set is ignored)."""

    @classmethod
    def lpop(cls, queue_keys: Sequence[str], timeout: int | None, connection=None):
        while True:
            result = super().lpop(queue_keys, timeout, connection=connection)
            if result is None or _acceptable(connection, result):
                return result
            if timeout is not None:
                raise DequeueTimeout(timeout, queue_keys)  # the worker loop simply goes on

    @classmethod
    def lmove(cls, connection: redis.Redis, queue_key: str, timeout: int | None):
        while True:
            result = super().lmove(connection, queue_key, timeout)
            if result is None or _acceptable(connection, result):
                return result
            connection.lrem(IntermediateQueue(queue_key, connection).key, 1, result[1])
            if timeout is not None:
                raise DequeueTimeout(timeout, queue_key)


def _acceptable(connection: redis.Redis, popped: tuple[Any, Any]) -> bool:
    message_id = popped[1]
    raw = message_id if isinstance(message_id, bytes) else str(message_id).encode()
    if _RQ_ID.fullmatch(raw):
        return True
    _discard(connection, b"rq:job:" + raw, raw, "not an RQ job id")
    return False


def shard_queue(connection: redis.Redis, name: str) -> ShardQueue:
    return ShardQueue(name, connection=connection, serializer=SERIALIZER, job_class=ShardMessage)


# Sending messages -----------------------------------------------------------------------------


def deliver(
    connection: redis.Redis, queue: str, shard_ids: Iterable[int], fresh: bool = False
) -> None:
    """One message per shard on `queue` (`fresh` ids for a delivery that is not the first)."""
    target = shard_queue(connection, queue)
    messages = [
        Queue.prepare_data(
            RUN_SHARD,
            args=(shard_id,),
            job_id=shard_message_id(shard_id, fresh),
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"shard {shard_id}",
        )
        for shard_id in shard_ids
    ]
    if messages:
        with connection.pipeline() as pipeline:
            target.enqueue_many(messages, pipeline=pipeline)
            pipeline.execute()


def waiting(connection: redis.Redis, queues: Iterable[str]) -> set[int]:
    """The shards whose message waits in one of `queues` (taken by no worker yet)."""
    with connection.pipeline(transaction=False) as pipeline:
        for name in queues:
            pipeline.lrange(shard_queue(connection, name).key, 0, -1)
        lists = pipeline.execute()
    shards = (shard_of(raw.decode(errors="replace")) for ids in lists for raw in ids)
    return {shard for shard in shards if shard is not None}


def cancel_messages(connection: redis.Redis, shard_ids: Sequence[int]) -> None:
    """Take the first messages of these shards off their queue (a worker would only find them
    cancelled; later deliveries are dropped the same way when taken)."""
    for shard_id in shard_ids:
        with contextlib.suppress(NoSuchJobError):
            job = ShardMessage.fetch(
                shard_message_id(shard_id), connection=connection, serializer=SERIALIZER
            )
            if job.get_status(refresh=False) in ("queued", "deferred", "scheduled"):
                job.cancel()
