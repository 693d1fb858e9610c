"""Throughput of `prepare` against the original tool's straightforward approach.

    python benchmarks/prepare_throughput.py [--mbp 20] [--chunk-size 500] [--workdir DIR]

Generates a deterministic, coding-rich FASTA (short reads to contigs of tens of kb, long stop-free
ORFs on either strand, some N runs and soft-masked lowercase), then times, each in a fresh
subprocess so that peak memory (ru_maxrss) belongs to one implementation:

  ours      virnucpro_worker.sequences.prepare.prepare as `virnucpro prepare` runs it (streamed,
            vectorised with numpy, blocks spread over one process per CPU)
  ours-1    the same in a single process
  baseline  the original's approach: Biopython SeqIO.parse, the chunk loop on SeqRecord slices,
            SeqIO.write of each chunk, then the chunk file parsed again and each chunk translated
            in six frames codon by codon through a dictionary, same frame rule, same files
  ours/4    ours on an input a quarter of the size: peak memory must not grow with input size

The outputs of ours and the baseline are compared byte for byte. Times cover the preparation call
only (not interpreter start-up or imports).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUTPUT_SUFFIXES = ("_chunked{}.fa", "_identified_nucleotide.fa", "_identified_protein.faa")

# --------------------------------------------------------------------------------------------
# Input generation
# --------------------------------------------------------------------------------------------

_BASES = "TCAG"
_CODE = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
_CODONS = [a + b + c for a in _BASES for b in _BASES for c in _BASES]
_SENSE = np.array(
    [list(codon.encode()) for codon, aa in zip(_CODONS, _CODE, strict=True) if aa != "*"],
    dtype=np.uint8,
)
_STOPS = np.array(
    [list(codon.encode()) for codon, aa in zip(_CODONS, _CODE, strict=True) if aa == "*"],
    dtype=np.uint8,
)
_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTacgt", b"TGCAtgca", strict=True):
    _COMPLEMENT[_a] = _b


def _record_lengths(rng: np.random.Generator, total: int) -> list[int]:
    """Record lengths: many short reads, some genes, a few contigs; contigs carry most bases."""
    lengths: list[int] = []
    remaining = total
    while remaining > 0:
        kind = rng.random()
        if kind < 0.45:
            length = int(rng.integers(150, 301))  # short reads
        elif kind < 0.80:
            length = int(rng.integers(400, 3_001))  # genes, long reads
        else:
            length = int(rng.integers(8_000, 60_001))  # contigs
        length = min(length, remaining)
        lengths.append(length)
        remaining -= length
    return lengths


def _coding_sequence(rng: np.random.Generator, length: int) -> np.ndarray:
    """Sense codons with a stop every ~1500 bp on average (long ORFs in frame 1)."""
    count = -(-length // 3)
    codons = _SENSE[rng.integers(0, len(_SENSE), count)]
    stops = rng.random(count) < 1 / 500
    codons[stops] = _STOPS[rng.integers(0, len(_STOPS), int(stops.sum()))]
    return codons.reshape(-1)[:length]


def generate_fasta(path: Path, mbp: float, seed: int = 2026) -> tuple[int, int]:
    """Write a deterministic coding-rich FASTA of `mbp` megabases; returns (records, bases)."""
    rng = np.random.default_rng(seed)
    lengths = _record_lengths(rng, int(mbp * 1_000_000))
    with path.open("wb") as handle:
        for number, length in enumerate(lengths):
            seq = _coding_sequence(rng, length)
            if rng.random() < 0.5:  # the ORFs on the reverse strand
                seq = _COMPLEMENT[seq[::-1]]
            offset = int(rng.integers(0, 3))  # and in any frame
            seq = np.concatenate((seq[offset:], _SENSE[0][:offset]))
            if rng.random() < 0.2:  # runs of N (gaps in assemblies)
                for _ in range(int(rng.integers(1, 4))):
                    start = int(rng.integers(0, length))
                    seq[start : start + int(rng.integers(1, 60))] = ord("N")
            if rng.random() < 0.05:  # soft-masked region
                start = int(rng.integers(0, length))
                seq[start : start + 500] |= 0x20  # ASCII letters to lower case
            text = seq.tobytes()
            lines = b"\n".join(text[i : i + 60] for i in range(0, len(text), 60))
            handle.write(b">seq%d len=%d synthetic\n%s\n" % (number, length, lines))
    return len(lengths), sum(lengths)


# --------------------------------------------------------------------------------------------
# Baseline: the original tool's straightforward approach
# --------------------------------------------------------------------------------------------

CODON_TABLE = dict(zip(_CODONS, _CODE, strict=True))


def _baseline_reverse_complement(sequence: str) -> str:
    return sequence.translate(str.maketrans("ACGTacgt", "TGCAtgca"))[::-1]


def _baseline_translate(sequence: str) -> list[str]:
    def frame(seq: str, start: int) -> str:
        return "".join(CODON_TABLE.get(seq[i : i + 3], "") for i in range(start, len(seq) - 2, 3))

    reverse = _baseline_reverse_complement(sequence)
    return [frame(sequence, f) for f in range(3)] + [frame(reverse, f) for f in range(3)]


def _baseline_identify(seqid: str, sequence: str) -> list[tuple[str, str, str]]:
    """(frame id, nucleotide, protein) of each stop-free frame, as the original's identify_seq."""
    kept = []
    for number, protein in enumerate(_baseline_translate(sequence), start=1):
        if not protein or "*" in protein:
            continue
        span = 3 * len(protein) + 1
        if number <= 3:
            kept.append((f"{seqid}F{number}", sequence[number - 1 : number - 1 + span], protein))
        else:
            reverse = _baseline_reverse_complement(sequence)
            kept.append((f"{seqid}R{number - 3}", reverse[number - 4 : number - 4 + span], protein))
    return kept


def baseline_prepare(input_path: Path, chunk_size: int, out_dir: Path) -> None:
    """The original's preparation: chunk file via SeqIO, then the whole chunk file loaded as a
    list (as the original does) and each chunk translated in Python."""
    from Bio import SeqIO

    stem = input_path.name.removesuffix(".fa")
    chunk_path = out_dir / f"{stem}_chunked{chunk_size}.fa"
    out_dir.mkdir(parents=True, exist_ok=True)
    with chunk_path.open("w") as out:
        for record in SeqIO.parse(str(input_path), "fasta"):
            length = len(record.seq)
            count = math.ceil(length / chunk_size)
            repeat = count * chunk_size - length
            lower = int(repeat / count)
            need = repeat - lower * (count - 1)
            shifts = [lower + 1] * need + [lower] * (count - 1 - need) + [0]
            moved = 0
            for a, shift in zip(range(0, length, chunk_size), shifts):  # noqa: B905
                start = a - moved if a > 1 else a
                chunk = record[start : start + chunk_size]
                chunk.id = f"{record.id}_chunk_{a // chunk_size + 1}"
                chunk.description = ""
                SeqIO.write(chunk, out, "fasta")
                moved += shift

    nucleotide_path = out_dir / f"{stem}_identified_nucleotide.fa"
    protein_path = out_dir / f"{stem}_identified_protein.faa"
    with nucleotide_path.open("w") as nucleotide, protein_path.open("w") as protein:
        records = list(SeqIO.parse(str(chunk_path), "fasta"))
        for record in records:
            for frame_id, dna, protein_sequence in _baseline_identify(
                record.id, str(record.seq).upper()
            ):
                nucleotide.write(f">{frame_id}\n{dna}\n")
                protein.write(f">{frame_id}\n{protein_sequence}\n")


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def child(implementation: str, input_path: Path, chunk_size: int, out_dir: Path) -> None:
    """Run one implementation in this (fresh) process and print a JSON line of measurements."""
    if implementation.startswith("ours"):
        from virnucpro_worker.sequences.prepare import default_workers, prepare

        workers = 1 if implementation == "ours-1" else default_workers()

        def run() -> None:
            prepare(input_path, chunk_size, out_dir, workers=workers)
    else:

        def run() -> None:
            baseline_prepare(input_path, chunk_size, out_dir)

    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    # KiB on Linux; the largest of this process and its worker processes (already joined).
    peak_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024}))


def measure(implementation: str, input_path: Path, chunk_size: int, out_dir: Path) -> dict:
    """One run in a fresh interpreter: {"seconds": ..., "peak_mib": ...}."""
    command = [
        sys.executable,
        __file__,
        "--child",
        implementation,
        str(input_path),
        str(chunk_size),
        str(out_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbp", type=float, default=20.0, help="input size in megabases")
    parser.add_argument("--chunk-size", type=int, choices=(300, 500), default=500)
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here")
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh processes per measurement; the fastest counts"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("IMPL", "INPUT", "CHUNK", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        implementation, input_path, chunk_size, out_dir = args.child
        child(implementation, Path(input_path), int(chunk_size), Path(out_dir))
        return 0

    with tempfile.TemporaryDirectory(prefix="prepare_bench_") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        full, quarter = workdir / "bench.fa", workdir / "bench_quarter.fa"
        started = time.perf_counter()
        records, bases = generate_fasta(full, args.mbp)
        quarter_records, quarter_bases = generate_fasta(quarter, args.mbp / 4, seed=2027)
        print(
            f"generated {full.name}: {records} records, {bases / 1e6:.2f} Mbp; "
            f"{quarter.name}: {quarter_records} records, {quarter_bases / 1e6:.2f} Mbp "
            f"({time.perf_counter() - started:.1f} s)",
            flush=True,
        )

        runs = [
            ("ours", full, bases, workdir / "out_ours"),
            ("ours-1", full, bases, workdir / "out_ours_1"),
            ("baseline", full, bases, workdir / "out_baseline"),
            ("ours", quarter, quarter_bases, workdir / "out_ours_quarter"),
        ]
        timings: dict[int, list[dict]] = {index: [] for index in range(len(runs))}
        for _ in range(args.repeat):  # interleaved, so that background load hits all alike
            for index, (implementation, input_path, _size, out_dir) in enumerate(runs):
                timings[index].append(measure(implementation, input_path, args.chunk_size, out_dir))
        rows = []
        for index, (implementation, input_path, size, _out_dir) in enumerate(runs):
            label = implementation if input_path == full else f"{implementation} (1/4 input)"
            seconds = min(result["seconds"] for result in timings[index])
            peak = max(result["peak_mib"] for result in timings[index])
            every = ", ".join(f"{result['seconds']:.2f}" for result in timings[index])
            print(f"  {label}: {every} s", flush=True)
            rows.append((label, size / 1e6, seconds, peak))

        names = [suffix.format(args.chunk_size) for suffix in OUTPUT_SUFFIXES]
        identical = all(
            filecmp.cmp(
                workdir / "out_ours" / f"bench{n}",
                workdir / "out_baseline" / f"bench{n}",
                shallow=False,
            )
            for n in names
        )
        frames = sum(
            1 for line in (workdir / "out_ours" / f"bench{names[2]}").open() if line[0] == ">"
        )
        chunks = sum(
            1 for line in (workdir / "out_ours" / f"bench{names[0]}").open() if line[0] == ">"
        )

    print()
    print("| implementation | Mbp | seconds | Mbp/s | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, mbp, seconds, peak in rows:
        print(f"| {label} | {mbp:.2f} | {seconds:.2f} | {mbp / seconds:.2f} | {peak:.0f} |")
    print()
    print(f"chunks: {chunks}, kept frames: {frames}")
    print(
        f"seconds: fastest of {args.repeat} fresh processes; peak RSS: ru_maxrss of the "
        "largest process (main or worker), largest run"
    )
    baseline = rows[2][2]
    print(
        f"speed ratio (baseline / ours): {baseline / rows[0][2]:.1f}x "
        f"({baseline / rows[1][2]:.1f}x in a single process)"
    )
    print(f"outputs byte-identical: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
