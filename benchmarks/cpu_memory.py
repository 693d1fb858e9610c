"""Peak memory of `virnucpro predict --demo-models` on the CPU, default backend against v1-bmm.

    python benchmarks/cpu_memory.py [--mbp 1]

Each run is a fresh process (peak RSS from the kernel, ru_maxrss of the child); the input is a
deterministic 1 Mbp mix of coding and random records of 0.3-5 kb. Prints both peaks and their
ratio (README "Memory": the default must stay within 1.5x of v1-bmm).
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENSE = [a + b + c for a in "ACGT" for b in "ACGT" for c in "ACGT"]
SENSE = [codon for codon in SENSE if codon not in ("TAA", "TAG", "TGA")]


def write_input(path: Path, bases: int) -> None:
    rng = random.Random(0)
    with path.open("w") as out:
        total = index = 0
        while total < bases:
            length = rng.choice([300, 1000, 2000, 5000])
            if rng.random() < 0.5:
                sequence = "".join(rng.choices(SENSE, k=length // 3))
            else:
                sequence = "".join(rng.choices("ACGT", k=length))
            out.write(f">r{index}\n{sequence}\n")
            total += len(sequence)
            index += 1


def peak_of(arguments: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one predict run in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(arguments, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("ru_maxrss did not move: run each backend in its own invocation")
    return peak / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mbp", type=float, default=1.0)
    parser.add_argument("--backend", choices=("flash-varlen", "v1-bmm"), help="one run only")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    fasta = work / "input.fa"
    write_input(fasta, int(args.mbp * 1e6))
    base = [sys.executable, "-m", "virnucpro_worker.interfaces.cli", "-q", "predict", str(fasta)]
    base += ["--chunk-size", "500", "--demo-models", "--no-progress", "--out"]
    if args.backend:
        peak, seconds = peak_of([*base, str(work / "out"), "--attention", args.backend])
        print(f"{args.backend}: {peak:.0f} MB, {seconds:.1f} s")
        return
    # ru_maxrss of children is the largest child so far: run the smaller first, each alone.
    results = {}
    for backend in ("v1-bmm", "flash-varlen"):
        command = [sys.executable, __file__, "--mbp", str(args.mbp), "--backend", backend]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print(output.strip())
        results[backend] = float(output.split(":")[1].split("MB")[0])
    print(f"ratio flash-varlen / v1-bmm: {results['flash-varlen'] / results['v1-bmm']:.2f}")


if __name__ == "__main__":
    main()
