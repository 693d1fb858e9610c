"""`GpuWorker`: an RQ worker that loads the models once and runs shards on its GPU.

It is an RQ `SimpleWorker` (a forked child cannot use CUDA once the parent has, and a fresh
process per job would load the 3B model every time) that changes what RQ 2.12 gets wrong for
such a worker (README "Guarantees" says what each buys, and which test shows it):

- it listens on the queues of what it can run: for each chunk size it has a classifier for,
  its kind of models ("demo" or "real") and its model files (`messages.queue_name`);
- it reads every message as a `messages.ShardMessage` (one allow-listed function, one integer;
  anything else is deleted unread, and RQ options a message carries are dropped);
- the database, not RQ, decides when a shard was abandoned: while a shard runs, a thread renews
  its lease, then the worker's RQ heartbeat, every `heartbeat` seconds (a message's entry in
  RQ's started registry outlives the shard's time limit instead of being renewed); RQ's own
  registry cleanup, which would retry or fail a message by its started-registry score and
  call its callbacks, only drops the expired entries here, and the worker's maintenance runs
  the sweep (`sweep.py`) that queues again the shards whose lease ran out;
- SIGTERM (or SIGINT) stops an idle worker at once and a busy one after its current block,
  without a traceback wherever it lands; stopping never waits on RQ's command-channel thread;
- a lost GPU (`shard_runner.DeviceLost`, raised out of a shard) stops it after that shard.

Run it as `virnucpro worker ...` (which also survives Redis restarts: it reconnects and goes
on), or through RQ's own command line: `rq worker -w
virnucpro_worker.interfaces.rq_worker.GpuWorker --url REDIS virnucpro-500-real ...`
(settings from VIRNUCPRO_* variables and the config file: `interfaces/rq_worker.py`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis
from rq import SimpleWorker, worker_registration
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.utils import current_timestamp, now
from rq.worker import WorkerStatus

if TYPE_CHECKING:
    from ..pipeline.predictor import Predictor

from ..errors import first_line
from ..settings import Settings
from ..store.engine import DatabaseError
from . import messages, sweep
from .shard_runner import DeviceLost, ShardRunner

log = logging.getLogger(__name__)
_current: GpuWorker | None = None
redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def current_worker() -> GpuWorker:
    if _current is None:
        raise RuntimeError("virnucpro jobs run only inside a virnucpro GpuWorker")
    return _current


def served_queues(base: str, predictor: Predictor) -> list[str]:
    """The queues of what the predictor can run: per chunk size, its kind and its files."""
    kind = "demo" if predictor.demo else "real"
    names = []
    for size in predictor.chunk_sizes:
        names += [
            messages.queue_name(base, size, kind),
            messages.queue_name(base, size, predictor.model_set(size).key),
        ]
    return names


class GpuWorker(SimpleWorker):
    """An RQ worker holding one loaded model set (`predictor`) on one device."""

    queue_class = messages.ShardQueue
    job_class = messages.ShardMessage

    def __init__(
        self,
        queues: Any = None,
        *args: Any,
        settings: Settings,
        predictor: Predictor,
        **kwargs: Any,
    ) -> None:
        connection = kwargs.pop("connection", None) or messages.connect(settings.redis_url)
        kwargs["serializer"] = messages.SERIALIZER  # whatever rq's command line says: never pickle
        kwargs["job_class"], kwargs["queue_class"] = messages.ShardMessage, messages.ShardQueue
        # An idle worker waits on Redis `lease` seconds at a time (RQ: worker TTL - 15) and
        # runs its maintenance, the sweep included, every `lease` seconds.
        lease = max(1, round(settings.lease_seconds))
        kwargs["worker_ttl"] = lease + 15
        kwargs["maintenance_interval"] = lease
        names = [getattr(q, "name", q) for q in queues or []] or served_queues(
            settings.queue, predictor
        )
        shard_queues = [messages.shard_queue(connection, name) for name in names]
        super().__init__(shard_queues, *args, connection=connection, **kwargs)
        self.settings, self.predictor, self.lease = settings, predictor, lease
        self.device_lost = False
        self.stop_asked = False  # SIGINT or SIGTERM: the supervisor (`serve`) stops too
        self.waiting = False  # in RQ's wait for a shard, where a stop request may raise
        self.runner = ShardRunner(
            settings,
            predictor,
            name=self.name,
            connection=connection,
            queues=self.queue_names(),
            stopping=lambda: self.stop_asked,
        )
        self.push_exc_handler(self._stop_if_device_lost)

    # Stopping -------------------------------------------------------------------------------

    def request_stop(self, signum: int, frame: Any) -> None:
        """Waiting for a shard: stop now; busy: the running shard gives itself back after its
        block; anywhere else in RQ's loop: at the loop's next wait. RQ raises StopRequested
        from the signal handler whenever its worker is not busy, and raised inside a log line
        (at the end of a burst, say) logging prints it as a traceback and swallows it."""
        self.stop_asked = True
        if self.waiting or self.get_state() == WorkerStatus.BUSY:
            super().request_stop(signum, frame)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        self.waiting = True  # before the check: a stop asked from here on raises at once
        try:
            if self.stop_asked:
                raise StopRequested()
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self.waiting = False

    def subscribe(self) -> None:
        """RQ's command channel, read by a thread that wakes every second: RQ's waits up to 60 s
        for a message, and stopping the worker waits for that thread."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    # Running a shard ------------------------------------------------------------------------

    def get_heartbeat_ttl(self, job: Job) -> int:
        """RQ's started-registry entry outlives the shard's time limit: the database lease,
        not this entry, says whether the shard still runs (the sweep acts on it)."""
        return self.settings.shard_timeout + self.lease

    def execute_job(self, job: Job, queue: Queue) -> None:
        global _current
        job.timeout = self.settings.shard_timeout  # the worker's limit, not the message's
        _current = self
        try:
            with self._heartbeats():
                super().execute_job(job, queue)
        finally:
            _current = None

    def _stop_if_device_lost(
        self,
        job: Job,
        kind: type[BaseException],
        error: BaseException,
        traceback: TracebackType | None,
    ) -> bool:
        """RQ's handler of an exception out of a job: a lost GPU stops this worker after the
        job, as SIGTERM would (its shard is queued again, for another worker)."""
        if not isinstance(error, DeviceLost):
            return True  # RQ's other handlers, if any
        self.log.error("Worker %s: its GPU is lost; stopping", self.name)
        self.device_lost = True
        self.request_stop(signal.SIGTERM, None)
        return False

    @contextlib.contextmanager
    def _heartbeats(self) -> Iterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(stop,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _beat(self, stop: threading.Event) -> None:
        """Every `heartbeat` seconds while a shard runs: its lease in the database, then this
        worker's RQ heartbeat, and, every few beats, the sweep (busy workers sweep too)."""
        beats = 0
        while not stop.wait(self.settings.heartbeat_seconds):
            beats += 1
            try:
                self.runner.renew_lease()
            except DatabaseError as error:  # away for a moment: the next beat tries again
                self.log.warning("Worker %s: lease not renewed: %s", self.name, first_line(error))
                continue  # no sweep until this worker's own lease is renewed: it would expire it
            try:
                self.heartbeat()
            except redis.exceptions.RedisError as error:
                self.log.warning("Worker %s: heartbeat failed: %s", self.name, first_line(error))
            if beats % 3 == 0:
                self.sweep()

    # Maintenance ----------------------------------------------------------------------------

    def clean_registries(self) -> None:
        """RQ's registry upkeep without what would act on a message: the started-registry
        entries of dead workers are dropped (the sweep, not RQ, runs their shards again), then
        the database sweep."""
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                drop_abandoned(queue)
                FinishedJobRegistry(queue=queue).cleanup()
                FailedJobRegistry(queue=queue).cleanup()
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
                queue.release_maintenance_lock()
        self.sweep()
        self.last_cleaned_at = now()

    def sweep(self) -> None:
        """The database sweep, by one worker of the pool at a time."""
        lock = f"{self.settings.queue}:sweep"
        try:
            if not self.connection.set(lock, self.name, nx=True, ex=max(1, self.lease // 2)):
                return
            queued = sweep.sweep(self.runner.store, self.connection, self.settings)
        except (DatabaseError, redis.exceptions.RedisError) as error:
            self.log.warning("Worker %s: sweep failed: %s", self.name, first_line(error))
            return
        if queued:
            self.log.info("Worker %s: sweep queued %d shard(s) again", self.name, queued)


def drop_abandoned(queue: Queue) -> None:
    """Forget the messages of the queue's started registry whose worker stopped heartbeating,
    unread: no callback, retry or dependent of theirs runs."""
    registry = StartedJobRegistry(queue=queue)
    score = current_timestamp()
    entries = queue.connection.zrangebyscore(registry.key, 0, score)
    with queue.connection.pipeline() as pipeline:
        for entry in entries:
            pipeline.delete(Job.redis_job_namespace_prefix.encode() + entry.split(b":")[0])
        pipeline.zremrangebyscore(registry.key, 0, score)
        pipeline.execute()


def serve(
    settings: Settings, predictor: Predictor, queues: list[str] | None = None, burst: bool = False
) -> int:
    """Run a GpuWorker until it is stopped (or, with `burst`, until its queues are empty),
    starting it again after Redis went away: RQ's worker quits when Redis fails while a job
    runs; the models stay loaded. Returns the exit status (3 when the GPU was lost)."""
    wait = 1.0
    while True:
        try:
            worker = GpuWorker(queues, settings=settings, predictor=predictor)
            worker.work(burst=burst, logging_level=logging.getLevelName(log.getEffectiveLevel()))
        except redis_errors as error:
            log.warning("Redis is away (%s); reconnecting in %.0f s", first_line(error), wait)
        else:
            if worker.device_lost:
                return 3
            if burst or worker.stop_asked:
                return 0
            log.warning("the worker stopped (Redis away?); reconnecting in %.0f s", wait)
            wait = 1.0
        time.sleep(wait)
        wait = min(wait * 2, 30.0)
