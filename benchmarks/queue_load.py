"""Load: concurrent small submissions served by two workers on loopback.

    python benchmarks/queue_load.py [--jobs 50] [--workers 2]

`--jobs` threads submit at once, each a small input (the first three records of
examples/demo_contigs.fa: one shard), and poll until their job has ended. Reports how many
succeeded, jobs per second from the first submission to the last result, and the p50/p95
submit-to-done latency. PostgreSQL (the machine's, a database of its own) and a private Redis.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the private services

from services import RedisServer, Workers, scratch_postgres  # noqa: E402

from virnucpro_worker.models.demo import write_demo_models  # noqa: E402
from virnucpro_worker.queue.client import Client  # noqa: E402
from virnucpro_worker.settings import Settings  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(redis_url: str, database: str, source: Path, jobs: int) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    succeeded = 0
    lock = threading.Lock()

    def one() -> None:
        nonlocal succeeded
        client = Client(redis_url, database, Settings())
        start = time.perf_counter()
        job = client.submit(source, 500, demo=True)
        state = client.wait(job, timeout=600, poll=0.05).state
        with lock:
            latencies.append(time.perf_counter() - start)
            succeeded += state == "succeeded"

    threads = [threading.Thread(target=one) for _ in range(jobs)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start, succeeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"virnucpro_load_{secrets.token_hex(4)}"
    with (
        tempfile.TemporaryDirectory() as scratch,
        scratch_postgres(args.postgres, name) as database,
    ):
        folder = Path(scratch)
        models = folder / "models"
        write_demo_models(models)
        source = folder / "small.fa"
        source.write_text(
            (ROOT / "examples" / "demo_contigs.fa").read_text().split(">contig_4 ")[0]
        )
        redis = RedisServer(folder / "redis").start()
        workers = Workers(redis.url, database, models)
        try:
            Client(redis.url, database, Settings()).store.jobs()  # the schema, before the rush
            for _ in range(args.workers):
                workers.start()
            time.sleep(5)  # the workers have loaded their models
            latencies, seconds, succeeded = run(redis.url, database, source, args.jobs)
        finally:
            workers.stop()
            redis.kill()
    print(
        f"{args.jobs} concurrent submissions, {args.workers} workers: {succeeded} succeeded in "
        f"{seconds:.1f} s = {args.jobs / seconds:.1f} jobs/s; submit-to-done p50 "
        f"{statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
        f"max {max(latencies):.2f} s"
    )


if __name__ == "__main__":
    main()
