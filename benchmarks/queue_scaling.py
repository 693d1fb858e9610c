"""How the work spreads over workers: one job of many shards served by one worker, then by
`--workers` workers, in one run. On GPU hosts, one worker per GPU (`--device cuda:N`); on this
CPU box, one CPU thread per worker, so that N workers use N of its cores.

    python benchmarks/queue_scaling.py [--workers 2] [--records 3000] [--device cpu|cuda]

For each run: wall time from submission to the job's end, throughput (chunks/s), its ratio to
one worker's, each worker's share of the shards, busy share (its shards' run time over the
wall time) and idle time, the shards' wait (from submission to the start of their last
attempt), and whether the result files of the two runs are identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the private redis-server and worker processes

from services import RedisServer, Workers  # noqa: E402

from virnucpro_worker.models.demo import write_demo_models  # noqa: E402
from virnucpro_worker.queue.client import Client  # noqa: E402
from virnucpro_worker.settings import Settings  # noqa: E402

UNIT = "ATGGCCGCTGAAAAACTGGGCCGTATTGACCCA"
RESULTS = ("prediction_results.txt", "prediction_results_highestscore.csv", "sequence_summary.tsv")


def run(folder: Path, models: Path, source: Path, workers: int, args) -> dict:
    redis = RedisServer(folder / f"redis-{workers}").start()
    database = f"sqlite:///{folder / f'queue-{workers}.db'}"
    settings = Settings(block_bases=args.block_bases, shard_chunks=args.shard_chunks)
    client = Client(redis.url, database, settings)
    pool = Workers(redis.url, database, models)
    try:
        client.store.jobs()
        for index in range(workers):
            device = args.device if args.device == "cpu" else f"cuda:{index}"
            pool.start("--device", device, "--workers", "1")
        time.sleep(8)  # every worker has loaded its models and waits on Redis
        start = time.perf_counter()
        job = client.submit(source, 500, demo=True)
        client.wait(job, timeout=3600, poll=0.05)
        wall = time.perf_counter() - start
        shards = client.store.shards(job)
        created = client.store.job(job).created_at
        client.write_outputs(job, folder / f"out-{workers}")
    finally:
        pool.stop()
        redis.kill()
    busy: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for shard in shards:
        busy[shard.worker] += (shard.finished_at - shard.started_at).total_seconds()
        count[shard.worker] += 1
    waits = [(shard.started_at - created).total_seconds() for shard in shards]
    return {
        "workers": workers,
        "wall": wall,
        "chunks": sum(shard.chunks for shard in shards),
        "shards": len(shards),
        "per_worker": {name: (count[name], busy[name]) for name in busy},
        "wait_median": statistics.median(waits),
        "wait_max": max(waits),
    }


def report(result: dict, baseline: dict | None) -> None:
    rate = result["chunks"] / result["wall"]
    ratio = (
        f", {rate / (baseline['chunks'] / baseline['wall']):.2f}x one worker" if baseline else ""
    )
    print(
        f"{result['workers']} worker(s): {result['shards']} shards, {result['chunks']} chunks in "
        f"{result['wall']:.1f} s = {rate:.0f} chunks/s{ratio}; shard wait median "
        f"{result['wait_median']:.1f} s, max {result['wait_max']:.1f} s"
    )
    wall = result["wall"]
    for name, (shards, busy) in sorted(result["per_worker"].items()):
        share, idle = shards / result["shards"], wall - busy
        print(f"  worker {name[:8]}: {shards} shards ({share:.0%}), busy {busy:.1f} s", end="")
        print(f" = {busy / wall:.0%} of the wall time, idle {idle:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--block-bases", type=int, default=20_000)
    parser.add_argument("--shard-chunks", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: worker i on cuda:i")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        models = folder / "models"
        write_demo_models(models)
        source = folder / "input.fa"
        source.write_text("".join(f">c{i}\n{UNIT * (10 + i % 7)}\n" for i in range(args.records)))
        one = run(folder, models, source, 1, args)
        report(one, None)
        many = run(folder, models, source, args.workers, args)
        report(many, one)
        same = all(
            (folder / "out-1" / name).read_bytes()
            == (folder / f"out-{args.workers}" / name).read_bytes()
            for name in RESULTS
        )
        print(f"result files of the two runs identical: {same}")


if __name__ == "__main__":
    main()
