"""Cold start at the real shapes: what a fresh process pays before and around its work.

Run on a GPU host:  PYTHONPATH=.:plugins:benchmarks python benchmarks/cold_start.py

Writes a real-shape model folder once (tests/models_for_tests.py: ESM-2 3B as an fp16
checkpoint, DNABERT-S, the MLP; random weights) and reads it into the page cache, then:

1. in fresh processes, the breakdown of `load_models(models=DIR, device="cuda")`: importing
   torch, importing ours, starting CUDA, the classifiers, ESM-2 (reading, building, moving,
   waiting for its sha256), DNABERT-S, and the first and second block of a small input: first
   with an empty Triton cache (every kernel compiled), then with that cache warm;
2. the whole `virnucpro predict` process on a coding input of `--chunks` 500 bp chunks (about
   10 Mbp at 20,000), wall time against its own ESM-2 stage (run.json): goal at most 1.25x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PATHS = os.pathsep.join(
    [str(ROOT / part) for part in ("", "plugins", "benchmarks", "tests")]
    + [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
)


def child(models: str) -> None:
    """One fresh process: timings in seconds, as JSON on stdout."""
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        seconds[name] = round(now - started, 3)
        started = now

    import torch

    lap("import torch")
    import virnucpro_worker
    from virnucpro_worker.pipeline.warmup import synthetic_records

    lap("import virnucpro_worker")
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    lap("start CUDA")
    predictor = virnucpro_worker.load_models(models=models, device="cuda")
    lap("load_models")
    records = synthetic_records()
    predictor.predict(records, chunk_size=500)
    lap("first block")
    predictor.predict(records, chunk_size=500)
    lap("the same block again")
    breakdown = {name: round(value, 3) for name, value in predictor.models.load_seconds.items()}
    print(json.dumps({"seconds": seconds, "load_models": breakdown}))


def fresh_process(models: Path, triton_cache: Path) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": PATHS, "TRITON_CACHE_DIR": str(triton_cache)}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(models)],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"the timed process failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, json.loads(result.stdout.strip().splitlines()[-1])


def read_into_page_cache(folder: Path) -> float:
    start = time.perf_counter()
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--work", type=Path, help="model folder and inputs (kept); default: temp")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--esm-layers", type=int, default=36, help="fewer: a quick smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    import torch
    from models_for_tests import coding_fasta, write_real_shape_models

    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    fasta = work / "coding.fa"
    if not fasta.exists():
        coding_fasta(fasta, args.chunks)
    start = time.perf_counter()
    models = write_real_shape_models(work / "models", fasta, esm_layers=args.esm_layers)
    print(
        f"{torch.cuda.get_device_name()}; model folder ready in {time.perf_counter() - start:.1f} s"
    )
    gib = sum(p.stat().st_size for p in models.rglob("*") if p.is_file()) / 2**30
    print(f"read {gib:.1f} GiB into the page cache in {read_into_page_cache(models):.1f} s")

    triton_cache = Path(tempfile.mkdtemp(prefix="triton-"))
    runs = {}
    for label in ("empty Triton cache", "warm Triton cache"):
        wall, timings = fresh_process(models, triton_cache)
        runs[label] = {"process_seconds": round(wall, 3), **timings}
        print(f"\n{label}: whole process {wall:.1f} s")
        for name, value in timings["seconds"].items():
            print(f"  {name:28} {value:7.2f} s")
        print(
            "  load_models: " + ", ".join(f"{k} {v:.2f}" for k, v in timings["load_models"].items())
        )

    out = work / "predict-out"
    env = {**os.environ, "PYTHONPATH": PATHS, "TRITON_CACHE_DIR": str(triton_cache)}
    command = [sys.executable, "-m", "virnucpro_worker.interfaces.cli", "predict", str(fasta)]
    command += ["--chunk-size", "500", "--models", str(models), "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    run = json.loads((out / "run.json").read_text())
    stages = run["stage_seconds"]
    mbp = run["counts"]["bases"] / 1e6
    print(
        f"\n`virnucpro predict` of {mbp:.2f} Mbp ({run['counts']['chunks']} chunks, "
        f"{run['counts']['kept_frames']} kept frames), warm Triton cache: process {wall:.1f} s; "
        "stages " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    )
    print(
        f"process wall time / its ESM-2 stage = {wall / stages['esm2']:.2f}x (goal at most 1.25x)"
    )
    if args.json:
        summary = {"runs": runs, "predict": {"wall": wall, "stages": stages, "mbp": mbp}}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
