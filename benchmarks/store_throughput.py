"""Frame rows per second into and out of the database, SQLite and PostgreSQL, in one run.

    python benchmarks/store_throughput.py [--frames 1000000] [--postgres URL]

The rows are a metagenome's: blocks of about 6,000 kept frames (what 2 Mbp of coding-rich
input gives), each with its chunk calls and record summaries, written as the prediction stream
writes them (`shards.commit_block`: one transaction per block of a held shard, replacing the
block's records)
and read back as `virnucpro results` reads them (`read_blocks`). The in-memory baseline is the
same rows built and walked without a database. Target: at least 100,000 frame rows/s, in and
out, on each database.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the scratch PostgreSQL database

from services import scratch_postgres  # noqa: E402

from virnucpro_worker.pipeline.parameters import JobParameters, ModelRequest  # noqa: E402
from virnucpro_worker.pipeline.results import block_result  # noqa: E402
from virnucpro_worker.sequences.fasta import FastaRecord  # noqa: E402
from virnucpro_worker.sequences.prepare import PreparedBlock, RecordInfo  # noqa: E402
from virnucpro_worker.sequences.translation import KeptFrame  # noqa: E402
from virnucpro_worker.store.jobs import InputFile  # noqa: E402
from virnucpro_worker.store.results import CHUNKS, FRAMES, RECORDS, read_blocks  # noqa: E402
from virnucpro_worker.store.shards import claim_shard, commit_block  # noqa: E402
from virnucpro_worker.store.store import Store  # noqa: E402

FRAMES_PER_BLOCK = 6000


def synthetic_blocks(frames: int, seed: int = 0) -> list:
    """Records of 1-8 chunks, 1-2 kept frames per chunk, random scores."""
    rng = random.Random(seed)
    blocks, record = [], 0
    while sum(len(b.frames) for b in blocks) < frames:
        infos, kept = [], []
        while len(kept) < FRAMES_PER_BLOCK:
            chunks = rng.randint(1, 8)
            name = f"contig_{record}"
            infos.append(RecordInfo(name, chunks * 500 - rng.randint(0, 400), chunks))
            for chunk in range(1, chunks + 1):
                for strand, frame in rng.sample(
                    [(s, f) for s in "FR" for f in (1, 2, 3)], rng.randint(1, 2)
                ):
                    kept.append(KeptFrame(name, chunk, strand, frame, "", "", 0))
            record += 1
        others = np.array([rng.random() for _ in kept], dtype=np.float32)
        scores = np.stack([others, 1 - others], axis=1)
        prepared = PreparedBlock(infos, [""] * len(infos), frames=sorted(kept, key=_order))
        blocks.append(block_result(prepared, scores, record - len(infos), 500))
    return blocks


def _order(frame: KeptFrame) -> tuple:
    return int(frame.record_id.split("_")[1]), frame.chunk, frame.strand, frame.frame


def in_memory(blocks: list) -> float:
    start = time.perf_counter()
    for block in blocks:
        for rows in (
            FRAMES.tuples(0, block.frames),
            CHUNKS.tuples(0, block.chunks),
            RECORDS.tuples(0, block.records),
        ):
            for _ in rows:
                pass
    return time.perf_counter() - start


def database(url: str, blocks: list) -> tuple[float, float]:
    store = Store(url)
    job = store.create_job(
        [FastaRecord("placeholder", "ACGT")],  # the job's input plays no part here
        parameters=JobParameters(500, "flash-varlen", 2_000_000, ModelRequest(demo=True)),
        input_file=InputFile("benchmark", "0" * 64, 0),
        shard_chunks=None,
    )
    (shard,) = [shard.id for shard in store.shards(job)]
    claimed = store.transaction(
        lambda session: claim_shard(
            session, shard, worker="benchmark", host="here", device="cpu", lease=3600
        )
    )
    assert claimed is not None
    start = time.perf_counter()
    for block in blocks:
        assert store.transaction(
            lambda session, block=block: commit_block(session, job, shard, "benchmark", block)
        )
    written = time.perf_counter() - start
    start = time.perf_counter()
    with store.engine.connect() as connection:
        read = sum(len(block.frames) for block in read_blocks(connection, job))
    assert read == sum(len(block.frames) for block in blocks)
    return written, time.perf_counter() - start


def report(database_name: str, frames: int, write: float, read: float) -> None:
    rates = f"write {frames / write:,.0f} frame rows/s, read {frames / read:,.0f} frame rows/s"
    print(f"{database_name + ':':11} {rates}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    blocks = synthetic_blocks(args.frames)
    frames = sum(len(b.frames) for b in blocks)
    chunks, records = sum(len(b.chunks) for b in blocks), sum(len(b.records) for b in blocks)
    print(f"{frames:,} frame rows, {chunks:,} chunk rows, {records:,} record rows", end=" ")
    print(f"in {len(blocks)} blocks")
    baseline = in_memory(blocks)
    print(f"in memory (rows built and walked): {frames / baseline:,.0f} frame rows/s")

    with tempfile.TemporaryDirectory() as folder:
        write, read = database(f"sqlite:///{Path(folder) / 'bench.db'}", blocks)
        report("SQLite", frames, write, read)

    name = f"virnucpro_bench_{secrets.token_hex(4)}"
    with scratch_postgres(args.postgres, name) as url:
        write, read = database(url, blocks)
        report("PostgreSQL", frames, write, read)


if __name__ == "__main__":
    main()
