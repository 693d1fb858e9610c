"""`GpuWorker`: an RQ worker that loads the models once and runs shards on its GPU.

It is an RQ `SimpleWorker` (a forked child cannot use CUDA once the parent has, and a fresh
process per job would load the 3B model every time) that changes what RQ 2.12 gets wrong for
such a worker (../docs and README "Guarantees" say what each buys):

- while a shard runs, a thread renews the job's entry in RQ's started registry, the worker's
  key and the shard's lease in the database every `heartbeat` seconds: a healthy long shard is
  never declared abandoned, and one whose worker died is found `lease` seconds later;
- the same thread, and the idle loop every `lease` seconds, collect abandoned jobs of its
  queues, so a killed worker's shard runs again about two leases later (a minute by default);
- every message is checked before anything runs: JSON only, one of two allow-listed
  functions, one integer argument; the database decides what to do with it.

Run it as `virnucpro worker ...` (which also survives Redis restarts: it reconnects and goes
on), or through RQ's own command line:
`rq worker -w virnucpro_worker.queue.GpuWorker --url REDIS virnucpro-500 virnucpro-300`
(settings from VIRNUCPRO_* variables and the config file).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.worker import WorkerStatus

from ..errors import first_line
from ..settings import Settings
from . import messages, shard_runner

log = logging.getLogger(__name__)
_current: GpuWorker | None = None
redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def current_worker() -> GpuWorker:
    if _current is None:
        raise RuntimeError("virnucpro jobs run only inside a virnucpro GpuWorker")
    return _current


class GpuWorker(SimpleWorker):
    """An RQ worker holding one loaded model set (`predictor`) on one device."""

    def __init__(
        self,
        queues: Any = None,
        *args: Any,
        settings: Settings | None = None,
        predictor: Any = None,
        **kwargs: Any,
    ) -> None:
        if settings is None:  # built by `rq worker -w ...`: the settings are the environment's
            from ..interfaces.api import environment_settings

            settings = environment_settings()
        if predictor is None:
            from ..interfaces.api import load_predictor

            predictor = load_predictor(settings, warm_up=True)
        connection = kwargs.pop("connection", None) or messages.connect(settings.redis_url)
        kwargs["serializer"] = messages.SERIALIZER  # whatever rq's command line says: never pickle
        # An idle worker waits on Redis `lease` seconds at a time (RQ: worker TTL - 15) and
        # collects abandoned jobs every `lease` seconds: a dead worker's shard runs again
        # within about two leases.
        lease = max(1, round(settings.lease_seconds))
        kwargs["worker_ttl"] = lease + 15
        kwargs["maintenance_interval"] = lease
        names = [getattr(q, "name", q) for q in queues or []] or [
            messages.queue_name(settings.queue, size) for size in predictor.chunk_sizes
        ]
        json_queues = [
            Queue(name, connection=connection, serializer=messages.SERIALIZER) for name in names
        ]
        super().__init__(json_queues, *args, connection=connection, **kwargs)
        self.settings, self.predictor, self.lease = settings, predictor, lease
        self.runner = shard_runner.ShardRunner(self, settings, predictor)
        self.device_lost = False
        self.stop_asked = False  # SIGINT or SIGTERM: the supervisor (`serve`) stops too

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)

    def get_heartbeat_ttl(self, job: Job) -> int:
        """RQ's started-registry entry lives `lease` seconds past each heartbeat."""
        return self.lease

    def execute_job(self, job: Job, queue: Queue) -> None:
        global _current
        reason = refusal(job)
        if reason is not None:
            self._refuse(job, queue, reason)
            return
        _current = self
        try:
            with self._heartbeats(job):
                super().execute_job(job, queue)
        finally:
            _current = None
        if self.device_lost:
            self.log.error("Worker %s: its GPU is lost; stopping", self.name)
            self._stop_requested = True

    def _refuse(self, job: Job, queue: Queue, reason: str) -> None:
        self.log.warning("Worker %s: refused message %s: %s", self.name, job.id, reason)
        self.prepare_execution(job)
        self.handle_job_failure(
            job=job,
            queue=queue,
            exc_string=f"refused: {reason}",
            started_job_registry=queue.started_job_registry,
        )
        self.set_state(WorkerStatus.IDLE)

    @contextlib.contextmanager
    def _heartbeats(self, job: Job) -> Iterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=self._beat, args=(job, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _beat(self, job: Job, stop: threading.Event) -> None:
        """Every `heartbeat` seconds while the job runs: RQ's heartbeats, the shard's lease,
        and, every few beats, other workers' abandoned jobs."""
        beats = 0
        while not stop.wait(self.settings.heartbeat_seconds):
            beats += 1
            try:
                self.maintain_heartbeats(job)
                self.runner.renew_lease()
                if beats % 3 == 0:
                    self.collect_abandoned()
            except Exception as error:  # Redis or the database away for a moment: try again
                self.log.warning("Worker %s: heartbeat failed: %s", self.name, first_line(error))

    def collect_abandoned(self) -> None:
        """RQ retries (or fails) the jobs of its queues whose heartbeats stopped."""
        for queue in self.queues:
            StartedJobRegistry(queue=queue, serializer=messages.SERIALIZER).cleanup()


def refusal(job: Job) -> str | None:
    """Why a message must not run, or None: only the allow-listed functions, with one id."""
    try:
        name, args, kwargs = job.func_name, job.args, job.kwargs
    except Exception as error:  # not JSON, or not an RQ job at all
        return f"cannot read the message ({type(error).__name__})"
    if name not in messages.ALLOWED_FUNCTIONS:
        return f"{name!r} is not a virnucpro function"
    if kwargs or len(args) != 1 or type(args[0]) is not int:
        return "a virnucpro message carries exactly one integer id"
    return None


def serve(
    settings: Settings, predictor: Any, queues: list[str] | None = None, burst: bool = False
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
