"""What happens when things go wrong, against a real Redis and the machine's real PostgreSQL:
Redis restarted or emptied, the database away while a shard finishes, a shard that always
fails, a GPU that runs out of memory or is lost, and load. (A worker killed mid-shard:
tests/test_queue.py.)"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from models_for_tests import model_args
from services import RedisServer, Workers
from sqlalchemy import func, select
from tcp_proxy import TcpProxy

from virnucpro_worker.interfaces.cli import main
from virnucpro_worker.pipeline.outputs import PREDICTIONS_FILE
from virnucpro_worker.queue.client import Client
from virnucpro_worker.settings import Settings
from virnucpro_worker.store.models import FramePrediction
from virnucpro_worker.store.store import Store

DEMO_INPUT = Path(__file__).parents[1] / "examples" / "demo_contigs.fa"
FAULTY_WORKER = [sys.executable, str(Path(__file__).parent / "faulty_worker.py")]
FAST = {"lease_seconds": 3, "heartbeat_seconds": 0.5}
UNIT = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA"


def contigs(path: Path, count: int, name: str = "c") -> Path:
    path.write_text("".join(f">{name}{i}\n{UNIT * (10 + i % 7)}\n" for i in range(count)))
    return path


def client(redis_url: str, database_url: str, **settings) -> Client:
    return Client(redis_url, database_url, Settings(block_bases=4000, shard_chunks=20, **settings))


def frame_rows(database_url: str, job: int) -> int:
    with Store(database_url).session() as session:
        query = (
            select(func.count()).select_from(FramePrediction).where(FramePrediction.job_id == job)
        )
        return session.scalar(query)


def expected_frames(demo_models, source: Path, tmp_path: Path, monkeypatch) -> int:
    monkeypatch.setenv("VIRNUCPRO_BLOCK_BASES", "4000")
    out = tmp_path / "clean"
    options = ["--chunk-size", "500", "--out", str(out), "--no-progress", *model_args(demo_models)]
    assert main(["predict", str(source), *options]) == 0
    return len((out / PREDICTIONS_FILE).read_text().splitlines()) - 1


def test_redis_restarted_with_aof_while_jobs_wait_and_one_runs(
    demo_models, postgres_url, tmp_path, monkeypatch
):
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    workers = Workers(redis.url, postgres_url, demo_models.folder, **FAST)
    try:
        jobs_client = client(redis.url, postgres_url)
        long = jobs_client.submit(
            contigs(tmp_path / "long.fa", 1500), 500, demo=True, shard_chunks=10**9
        )
        waiting = [jobs_client.submit(DEMO_INPUT, 500, demo=True) for _ in range(2)]
        workers.start()
        wait_for(lambda: jobs_client.status(long).state == "running", 60)
        time.sleep(1.5)  # AOF is fsynced every second
        redis.kill()
        time.sleep(2)
        redis.start()
        for job in (long, *waiting):
            assert jobs_client.wait(job, timeout=180).state == "succeeded", jobs_client.status(job)
        (shard,) = Store(postgres_url).shards(long)
        assert shard.attempts == 1  # the busy worker kept its shard through the restart
        assert frame_rows(postgres_url, long) == expected_frames(
            demo_models, tmp_path / "long.fa", tmp_path, monkeypatch
        )
    finally:
        workers.stop()
        redis.kill()


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Pool:
    """A private Redis, the machine's PostgreSQL, a client and workers to start."""

    def __init__(self, tmp_path: Path, database_url: str, models: Path) -> None:
        self.redis = RedisServer(tmp_path / "redis").start()
        self.database_url = database_url
        self.client = client(self.redis.url, database_url)
        self.workers = Workers(self.redis.url, database_url, models, **FAST)

    def close(self) -> None:
        self.workers.stop()
        self.redis.kill()


@pytest.fixture
def pool(demo_models, postgres_url, tmp_path):
    pool = Pool(tmp_path, postgres_url, demo_models.folder)
    yield pool
    pool.close()


def test_the_database_away_while_a_shard_runs(demo_models, postgres_url, tmp_path, monkeypatch):
    """The worker reaches PostgreSQL through a proxy that goes away for 5 s mid-shard: it
    waits, goes on, and the job succeeds with every row, once."""
    redis = RedisServer(tmp_path / "redis").start()
    proxy = TcpProxy("127.0.0.1", 5432)
    proxied = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    workers = Workers(redis.url, proxied, demo_models.folder, **FAST)
    try:
        jobs_client = client(redis.url, postgres_url)
        source = contigs(tmp_path / "long.fa", 1500)
        job = jobs_client.submit(source, 500, demo=True, shard_chunks=10**9)
        workers.start()
        wait_for(lambda: jobs_client.status(job).frames_done > 0, 60)
        proxy.cut()
        time.sleep(5)
        assert jobs_client.status(job).state == "running"  # never succeeded with rows missing
        proxy.restore()
        assert jobs_client.wait(job, timeout=180).state == "succeeded"
        assert frame_rows(postgres_url, job) == expected_frames(
            demo_models, source, tmp_path, monkeypatch
        )
    finally:
        workers.stop()
        proxy.cut()
        redis.kill()


def test_a_shard_that_always_fails_fails_its_job_and_the_worker_goes_on(pool, tmp_path):
    source = tmp_path / "poison.fa"
    source.write_text(DEMO_INPUT.read_text() + f">POISON_1\n{UNIT * 12}\n")
    job = pool.client.submit(source, 500, demo=True)
    worker = pool.workers.start(script=FAULTY_WORKER)
    status = pool.client.wait(job, timeout=120)
    assert status.state == "failed"
    assert "after 3 attempts: RuntimeError: poisoned record" in status.error
    assert status.error.startswith("shard ") and "-25) failed" in status.error
    clean = pool.client.submit(DEMO_INPUT, 500, demo=True)
    assert pool.client.wait(clean, timeout=60).state == "succeeded"
    assert worker.poll() is None  # the same worker process served it


def test_out_of_gpu_memory_fails_the_shard_with_a_clear_message(pool, tmp_path):
    source = tmp_path / "oom.fa"
    source.write_text(f">OOM_1\n{UNIT * 12}\n")
    job = pool.client.submit(source, 500, demo=True)
    worker = pool.workers.start(script=FAULTY_WORKER)
    status = pool.client.wait(job, timeout=120)
    assert status.state == "failed"
    assert "out of GPU memory on cpu: CUDA out of memory" in status.error
    assert worker.poll() is None


def test_a_lost_gpu_stops_its_worker_and_another_finishes_the_shard(pool, tmp_path):
    source = tmp_path / "lost.fa"
    source.write_text(f">GPULOST_1\n{UNIT * 12}\n")
    job = pool.client.submit(source, 500, demo=True)
    broken = pool.workers.start(script=FAULTY_WORKER)
    assert broken.wait(timeout=60) == 3  # it stops: its GPU is gone
    log = broken.stdout.read()
    assert "the GPU failed (cpu): CUDA error: an illegal memory access" in log
    assert "its GPU is lost" in log
    pool.workers.start()  # a healthy worker (the fault is in the broken one's device)
    assert pool.client.wait(job, timeout=60).state == "succeeded"
    (shard,) = Store(pool.database_url).shards(job)
    assert shard.attempts == 2


def test_fifty_concurrent_submissions_served_by_two_workers(pool, tmp_path):
    small = tmp_path / "small.fa"
    small.write_text("".join(DEMO_INPUT.read_text().split(">contig_4 ")[0]))
    pool.workers.start()
    pool.workers.start()
    jobs: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        job = client(pool.redis.url, pool.database_url).submit(small, 500, demo=True)
        with lock:
            jobs.append(job)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(jobs)) == 50
    frames = set()
    for job in jobs:
        assert pool.client.wait(job, timeout=300).state == "succeeded"
        frames.add(frame_rows(pool.database_url, job))
    assert len(frames) == 1 and frames.pop() > 0  # every job: the same rows, once
