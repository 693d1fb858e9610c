"""What the queue costs: submit-to-done of small jobs against the same work in-process, and
ingest (file to enqueued) in Mbp/s. Loopback, this machine's CPU, demo models.

    python benchmarks/queue_overhead.py [--jobs 20] [--ingest-mbp 100]

For each of `--jobs` jobs of one shard (examples/demo_contigs.fa, 24 records), one `virnucpro
worker` already waiting: submit, then poll the database every 5 ms until the job has ended.
The same records through `Predictor.predict_stream` in this process give the work itself; the
difference is the queue's overhead per shard (target: at most 100 ms). Ingest: a synthetic FASTA
of `--ingest-mbp` Mbp submitted with no worker (checked, sharded, compressed, stored and
enqueued; target: at least 20 Mbp/s). Both on SQLite and on the machine's PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the private services

from services import RedisServer, Workers, scratch_postgres  # noqa: E402

import virnucpro_worker  # noqa: E402
from virnucpro_worker.models.demo import write_demo_models  # noqa: E402
from virnucpro_worker.queue.client import Client  # noqa: E402
from virnucpro_worker.sequences.fasta import read_fasta  # noqa: E402
from virnucpro_worker.settings import Settings  # noqa: E402

DEMO_INPUT = ROOT / "examples" / "demo_contigs.fa"
SENSE = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]


def synthetic_fasta(path: Path, mbp: float) -> int:
    rng = random.Random(0)
    codons = [codon for codon in SENSE if codon not in ("TAA", "TAG", "TGA")]
    unit = "".join(rng.choices(codons, k=200_000))  # 600 kb to cut records from
    total = index = 0
    with path.open("w") as out:
        while total < mbp * 1e6:
            length = rng.choice((150, 300, 1000, 5000, 20000))
            start = rng.randrange(0, len(unit) - length)
            out.write(f">r{index}\n{unit[start : start + length]}\n")
            total += length
            index += 1
    return total


def in_process_seconds(models: Path, repeats: int) -> float:
    predictor = virnucpro_worker.load_models(models=models)
    records = list(read_fasta(DEMO_INPUT))
    list(virnucpro_worker.predict_stream(predictor, iter(records), 500))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        list(virnucpro_worker.predict_stream(predictor, iter(records), 500))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def queue_latencies(client: Client, jobs: int) -> list[float]:
    latencies = []
    for _ in range(jobs):
        start = time.perf_counter()
        job = client.submit(DEMO_INPUT, 500, demo=True)
        client.wait(job, timeout=120, poll=0.005)
        latencies.append(time.perf_counter() - start)
    return latencies


def measure(name: str, database: str, models: Path, folder: Path, args) -> None:
    redis = RedisServer(folder / f"redis-{name}").start()
    workers = Workers(redis.url, database, models)
    try:
        client = Client(redis.url, database, Settings())
        workers.start()
        queue_latencies(client, 2)  # warm-up: the worker's first shard, the schema
        latencies = queue_latencies(client, args.jobs)
        work = in_process_seconds(models, args.jobs)
        median, low, high = (1000 * f(latencies) for f in (statistics.median, min, max))
        print(
            f"{name}: submit-to-done median {median:.0f} ms (min {low:.0f}, max {high:.0f})", end=""
        )
        print(f" over {args.jobs} one-shard jobs; the same work in-process {work * 1000:.0f} ms;")
        print(f"{name}: queue overhead per shard {median - work * 1000:.0f} ms")
        workers.stop()
        source = folder / "ingest.fa"
        bases = synthetic_fasta(source, args.ingest_mbp)
        start = time.perf_counter()
        job = client.submit(source, 500, demo=True)
        seconds = time.perf_counter() - start
        shards = len(client.store.shards(job))
        print(
            f"{name}: ingest {bases / 1e6:.1f} Mbp ({source.stat().st_size / 1e6:.0f} MB) into "
            f"{shards} shards in {seconds:.1f} s = {bases / 1e6 / seconds:.1f} Mbp/s"
        )
    finally:
        workers.stop()
        redis.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--ingest-mbp", type=float, default=100)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        models = folder / "models"
        write_demo_models(models)
        measure("SQLite", f"sqlite:///{folder / 'queue.db'}", models, folder, args)
        name = f"virnucpro_bench_{secrets.token_hex(4)}"
        with scratch_postgres(args.postgres, name) as database:
            measure("PostgreSQL", database, models, folder, args)


if __name__ == "__main__":
    main()
