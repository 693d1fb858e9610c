"""One warm GPU worker serving a multi-shard job, against `predict` in process, at the real
shapes; and whether every way of running gives the same bits.

Run on a GPU host:  PYTHONPATH=.:plugins:benchmarks python benchmarks/queue_gpu.py
(`redis-server` on the PATH: where Redis is not installed, Debian's package unpacked serves.)

A private redis-server and a SQLite database. One `virnucpro worker` loads a real-shape model
folder (tests/models_for_tests.py, written once), warms its kernels and listens. This process
loads the same folder and warms up the same way, then:

- `predict` in process (`predict_file`, what `virnucpro predict` runs) on the input, twice;
- the Python API: `Predictor.predict(...).write(...)`;
- the queue: `Client.submit` with `--shard-chunks` shards, then wait and `write_outputs`.

Prints the in-process and the submit-to-files seconds and their ratio (target: the queue at
least 97% of in-process throughput), each shard's seconds and ESM-2 stage, and whether the
result files of all four runs are byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from models_for_tests import coding_fasta, write_real_shape_models  # noqa: E402
from services import RedisServer  # noqa: E402

RESULT_FILES = ("prediction_results.txt", "prediction_results_highestscore.csv")
RESULT_FILES += ("sequence_summary.tsv",)


def wait_for_idle_worker(redis_url: str, process: subprocess.Popen, log: Path) -> float:
    """Seconds until the worker has registered with RQ (it loads and warms up first)."""
    from rq import Worker

    from virnucpro_worker.queue import messages

    connection = messages.connect(redis_url)
    start = time.perf_counter()
    while not Worker.all(connection=connection):
        if process.poll() is not None:
            raise SystemExit(f"the worker exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return time.perf_counter() - start


def same_files(a: Path, b: Path) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in RESULT_FILES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=12000)
    parser.add_argument("--shard-chunks", type=int, default=5000)
    parser.add_argument("--work", type=Path, help="model folder and inputs (kept); default: temp")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--esm-layers", type=int, default=36, help="fewer: a quick smoke run")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the script itself")
    args = parser.parse_args()

    import torch

    import virnucpro_worker
    from virnucpro_worker.pipeline.run import predict_file
    from virnucpro_worker.pipeline.warmup import warm_up
    from virnucpro_worker.queue.client import Client
    from virnucpro_worker.settings import Settings
    from virnucpro_worker.store.store import Store

    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    models = work / "models"
    fasta = work / f"coding-{args.chunks}.fa"
    coding_fasta(fasta, args.chunks, seed=3)
    write_real_shape_models(models, fasta, esm_layers=args.esm_layers)
    run = Path(tempfile.mkdtemp(dir=work, prefix="queue-gpu-"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(work / "triton-cache"))
    redis = RedisServer(run / "redis").start()
    database = f"sqlite:///{run / 'jobs.db'}"
    env = {**os.environ, "VIRNUCPRO_REDIS_URL": redis.url, "VIRNUCPRO_DATABASE_URL": database}
    env["VIRNUCPRO_DEVICE"] = args.device
    log = run / "worker.log"
    command = [sys.executable, "-m", "virnucpro_worker.interfaces.cli", "worker"]
    with log.open("w") as output:
        worker = subprocess.Popen(
            [*command, "--models", str(models)], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        predictor = virnucpro_worker.load_models(models=str(models), device=args.device)
        warm_up(predictor)
        card = torch.cuda.get_device_name() if args.device != "cpu" else "CPU"
        print(
            f"{card}; worker ready after another "
            f"{wait_for_idle_worker(redis.url, worker, log):.1f} s"
        )

        seconds: dict[str, float] = {}
        for attempt in ("predict", "predict again"):
            start = time.perf_counter()
            predict_file(predictor, fasta, 500, run / attempt.replace(" ", "-"))
            seconds[attempt] = time.perf_counter() - start
        predictor.predict(str(fasta), chunk_size=500).write(run / "api")

        client = Client(redis.url, database, Settings())
        start = time.perf_counter()
        job = client.submit(fasta, chunk_size=500, shard_chunks=args.shard_chunks)
        status = client.wait(job, timeout=1800, poll=0.05)
        client.write_outputs(job, run / "queue")
        seconds["queue"] = time.perf_counter() - start
        assert status.state == "succeeded", status.line()
        shards = Store(database).shards(job)
    finally:
        worker.terminate()  # an idle worker stops at once; a busy one would finish its shard
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        redis.kill()

    predict = min(seconds["predict"], seconds["predict again"])
    print(
        f"input: {fasta.stat().st_size / 1e6:.1f} MB FASTA, {args.chunks} chunks, "
        f"{len(shards)} shards of at most {args.shard_chunks} chunks"
    )
    print(f"predict in process: {seconds['predict']:.1f} s, again {seconds['predict again']:.1f} s")
    print(
        f"queue, submit to files: {seconds['queue']:.1f} s: "
        f"{predict / seconds['queue']:.1%} of in-process throughput (target >= 97%)"
    )
    for shard in shards:
        provenance = shard.provenance
        started = datetime.fromisoformat(provenance["started"])
        finished = datetime.fromisoformat(provenance["finished"])
        stages = provenance["stage_seconds"]
        print(
            f"  shard {shard.index}: {shard.record_count} records, "
            f"{(finished - started).total_seconds():.1f} s, ESM-2 {stages['esm2']:.1f} s, "
            f"DNABERT-S {stages['dnabert_s']:.1f} s"
        )
    identical = {
        "predict twice": same_files(run / "predict", run / "predict-again"),
        "predict and the API": same_files(run / "predict", run / "api"),
        "predict and the queue": same_files(run / "predict", run / "queue"),
    }
    for what, same in identical.items():
        print(f"result files, {what}: {'IDENTICAL' if same else 'DIFFER'}")
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "identical": identical}, indent=2))


if __name__ == "__main__":
    main()
